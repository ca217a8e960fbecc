"""samples.jsonl: a monitor's header, samples, events and summary, one JSON object a line.

Each line is written and flushed as it happens, so a monitor killed with SIGKILL still leaves
every sample it took; the summary line is last and absent when the monitor was killed.

    {"kind": "monitor", "schema_version": 1, "target": ..., "interval_s": ..., ...}
    {"kind": "sample", "t_s": 0.0, "time": ..., "rss_bytes": ..., "uss_bytes": ..., ...}
    {"kind": "event", "event": "critical", "percent": 86.1, ...}
    {"kind": "summary", "verdict": "growing", ..., "ended": "exited", "exit_code": 0}
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from memdiag.errors import MemdiagError
from memdiag.measure.monitor.sample import MonitorSample
from memdiag.model.monitor import MonitorEnd, MonitorEvent, MonitorHeader
from memdiag.model.schema import SchemaError, build, describe

SCHEMA_VERSION = 1


@dataclass
class MonitorRecord:
    """A samples.jsonl read back: its header, samples, events and summary (if written)."""

    header: dict[str, Any]
    samples: list[MonitorSample] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    summary: dict[str, Any] | None = None


class SamplesWriter:
    """Appends lines to samples.jsonl, flushing each one."""

    def __init__(self, path: str | os.PathLike[str], header: dict[str, Any]) -> None:
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._file: IO[str] = target.open("w")
        except OSError as exc:
            raise MemdiagError(f"--out {path}: {exc.strerror}") from None
        self.write({"kind": "monitor", "schema_version": SCHEMA_VERSION, **header})

    def write(self, line: dict[str, Any]) -> None:
        """Write one JSON line and flush it to the operating system."""
        self._file.write(json.dumps(line, separators=(",", ":")) + "\n")
        self._file.flush()

    def sample(self, sample: MonitorSample) -> None:
        self.write({"kind": "sample", **sample.to_dict()})

    def event(self, event: dict[str, Any]) -> None:
        self.write({"kind": "event", **event})

    def close(self, summary: dict[str, Any] | None) -> None:
        """Write the summary line (when there is one) and close the file."""
        if summary is not None:
            self.write({"kind": "summary", **summary})
        os.fsync(self._file.fileno())
        self._file.close()


def read_samples_file(path: str | os.PathLike[str]) -> MonitorRecord:
    """Return a samples.jsonl's content; a missing or foreign file is a MemdiagError.

    A last line cut short (the monitor killed mid-write) is skipped, not an error.
    """
    try:
        lines = Path(path).read_text().splitlines()
    except OSError as exc:
        raise MemdiagError(f"{path}: {exc.strerror or exc}") from None
    rows = []
    for number, line in enumerate(lines, 1):
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            if number < len(lines):
                raise MemdiagError(f"{path}:{number}: not a JSON line") from None
    if not rows or not isinstance(rows[0], dict) or rows[0].get("kind") != "monitor":
        raise MemdiagError(f"{path}: not a memdiag monitor file (no monitor header)")
    if rows[0].get("schema_version") != SCHEMA_VERSION:
        raise MemdiagError(f"{path}: monitor file version {rows[0].get('schema_version')}")
    record = MonitorRecord(header=rows[0])
    for number, row in enumerate(rows, 1):
        try:
            _read_line(record, row, number == 1)
        except SchemaError as exc:
            raise MemdiagError(f"{path}:{number}: {exc}") from None
    return record


def _read_line(record: MonitorRecord, row: Any, first: bool) -> None:
    """Add one line, checked field by field against its model, to `record`."""
    if not isinstance(row, dict):
        raise SchemaError("", f"expected an object, got {describe(row)}")
    kind = row.get("kind") if first else row.pop("kind", None)
    if first:
        build(MonitorHeader, row)
    elif kind == "sample":
        record.samples.append(MonitorSample.from_dict(row))
    elif kind == "event":
        build(MonitorEvent, row)
        record.events.append(row)
    elif kind == "summary":
        build(MonitorEnd, row)
        record.summary = row
