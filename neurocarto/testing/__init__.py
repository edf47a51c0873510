"""Helpers the tests and the benchmarks share, not used by the product: the app served on a free 127.0.0.1 port
(`serving`) and complete synthetic runs of any size written straight into a store (`synthetic_run`)."""
