"""Store: runs on disk and the one way to read them (no torch).

Reads and writes the diskcache under `cache/` (bytes only, never unpickled); gives `Store` (every key it holds is
named in `keys`), `StoredRun` (a run's results for the app, export, evaluation, the CLI and notebooks), the packed
patch images and the stored ablation results.
"""
