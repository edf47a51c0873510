"""Analysis: questions asked of a stored run.

Reads `StoredRun`s (and, for ablation, the run's model and data again, with torch); gives the concept evaluation
(purity, intruders, embedding scores, causal scores), ablation of a concept on held-out images, and the export of a
run in open formats.
"""
