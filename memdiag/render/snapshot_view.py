"""Snapshots and diffs as display strings: sites as a reader knows them (`file:line`,
shortened), signed sizes, the peak's sites with their callers (rich markup). Shared by the
terminal renderer (render/terminal.py) and the leak report (leaks_view.py)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from memdiag.model.snapshot import PeakSite
from memdiag.units import format_size

# memdiag's own child calls the target: its frames explain nothing about the job.
MACHINERY = ("memdiag/measure/",)


def short_path(filename: str) -> str:
    """Return `filename` as a reader knows it: relative to the current directory, else from
    its top-level package (`memdiag_plugins/player_sync.py`), else as it is."""
    if filename.startswith(os.getcwd() + os.sep):
        return filename[len(os.getcwd()) + 1 :]
    path, top = Path(filename), None
    parent = path.parent
    while (parent / "__init__.py").is_file():
        top, parent = parent, parent.parent
    return str(path.relative_to(top.parent)) if top is not None else filename


def site_text(traceback: list[list[Any]]) -> str:
    """Return `file:line` of the allocating frame, shortened."""
    filename, lineno = traceback[-1]
    return f"{short_path(str(filename))}:{lineno}"


def signed_size(size: int | float | None) -> str:
    """Return a size with its sign: `+1.2 MB`, `-300 KB`, `0 B`; `-` for None."""
    if size is None:
        return "-"
    return ("+" if size > 0 else "") + format_size(size)


def peak_label(p: PeakSite, frames: int) -> str:
    """Return the site and, dimmed, the frames that called it and the ones it called."""
    filename, _, line = p.site.rpartition(":")
    label = f"{short_path(filename)}:{line}"
    keys = [f"{f}:{n}" for f, n in p.traceback]
    at = max((i for i, k in enumerate(keys) if k == p.site), default=len(keys) - 1)
    inner = [site_text([f]) for f in p.traceback[at + 1 :][-1:]]
    callers = [site_text([f]) for f in reversed(p.traceback[max(at - frames + 1, 0) : at])]
    callers = [c for c in callers if not c.startswith(MACHINERY)]
    here = site_text([[filename, line]])
    callers = [c for i, c in enumerate(callers) if c != ([here, *callers][i])]
    if inner:
        label += f"\n[dim]  → allocates in {inner[0]}[/]"
    if callers:
        label += f"\n[dim]  ← {' ← '.join(callers)}[/]"
    return label
