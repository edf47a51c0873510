"""Concepts: the algorithms over pass 1's arrays (numpy and numba, no torch).

Reads top-k image sets, the class matrix and neuron-level edge weights as arrays; gives neuron clusters (MinHash +
LSH, verified Jaccard), the concept hierarchy and its cuts, the co-occurrence embedding with its 2D projection, and a
class's concept graph at any cut.
"""
