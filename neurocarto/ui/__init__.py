"""UI: the Dash app over a store (no torch).

Reads `StoredRun`s through the store package only; gives the page (projection view, graph view, example panel,
the progress of runs being computed), its callbacks (registered by `app.create_app`), the image routes and the
headless `snapshot` of the views.
"""
