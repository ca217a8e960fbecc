"""The version of memdiag's JSON files (`schema_version`).

Its own module, importing nothing: the code that snapshots a Python process from inside
(`memdiag.measure.python.snapshot`, in a job or a running service) reads it without loading
the model and what the model imports.
"""

SCHEMA_VERSION = 1
