"""Following a process tree, or the machine, over time: what is read (`sample.py`), the loop
(`loop.py`) and the samples file (`file.py`). Runs in memdiag, beside the watched process."""
