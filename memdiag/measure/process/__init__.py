"""One run of any command, measured from outside: in memdiag, except `launcher.py`, which is the
bare interpreter between memdiag and the job."""
