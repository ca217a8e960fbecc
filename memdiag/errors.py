"""The one error type memdiag raises for bad input: printed as one line, never a traceback."""

from __future__ import annotations


class MemdiagError(Exception):
    """Bad input or an unusable file. `exit_code` 2 unless a command says otherwise."""

    def __init__(self, message: str, exit_code: int = 2) -> None:
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code

    def __str__(self) -> str:
        return self.message
