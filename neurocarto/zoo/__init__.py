"""Our own models and data: FashionInception with committed weights (so the default run needs no download), the
Parts data set with its ground truth, and their training scripts. `parts` uses numpy and PIL only, so the store can
label concepts by part without torch."""
