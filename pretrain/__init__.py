"""MAE pre-training on curated arrays: loader, masking, model, loss, train loop, export.

Imports :mod:`manifests` and torch; never dask.
"""
