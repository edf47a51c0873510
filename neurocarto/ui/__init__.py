"""The Dash app over precomputed runs: projection view, graph view, example panel."""
