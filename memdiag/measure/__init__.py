"""Measurement: the only layer that starts, signals or reads a process; a wing per thing seen.

- `process/`: one run of any command, measured from outside by memdiag (runner, sampler, /proc,
  the machine, memray captures), and the launcher process between memdiag and the job.
- `python/`: inside a Python process, looking at its heap (bootstrap, tracked child, snapshots,
  chains, owners, slices, the current process); `driver.py` is the parent side that starts it.
- `node/`: inside a Node.js process (V8 preload, heap figures, heap snapshots).
- `sweep/`: a grid of runs, on this machine or on a dask cluster (`worker.py` runs on a worker).
- `monitor/`: following a process or the machine over time (`memdiag monitor`, `memdiag serve`).

Attaching to a process memdiag did not start goes in a wing of its own beside these.
"""
