"""A grid of runs, each in a fresh process: on this machine (`grid.py`) or on a dask cluster
(`cluster.py` in memdiag, `worker.py` on the workers); `executor.py` chooses."""
