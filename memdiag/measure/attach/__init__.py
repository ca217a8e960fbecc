"""Getting into a running Python process from outside: checks, gdb, sys.remote_exec, a socket."""
