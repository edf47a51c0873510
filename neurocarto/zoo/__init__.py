"""Models of our own, with committed weights, so the default run needs no download."""
