"""Dask-parallel drivers: a pure block kernel mapped over partition blocks, one gather per step."""
