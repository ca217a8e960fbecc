"""Inside a Python process, looking at its heap. Standard library only, so the measured child
imports nothing heavy. Every module runs in the measured process (or a forked copy of it), except
`driver.py`, memdiag's side that starts it and reads what it writes."""
