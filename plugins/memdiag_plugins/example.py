"""A small bundled job: builds records in batches, optionally keeping them all (a leak)."""

from __future__ import annotations

from memdiag import probe


def run(records: int = 200_000, batch: int = 1_000, keep: bool = False) -> int:
    """Build `records` dict records in batches of `batch`; `keep=true` holds every one."""
    if records < 0 or batch <= 0:
        raise ValueError(f"records must be >= 0 and batch > 0 (got {records}, {batch})")
    kept: list[dict[str, object]] = []
    done = 0
    probe.phase("build")
    while done < records:
        size = min(batch, records - done)
        rows = [
            {"id": done + i, "name": f"player-{done + i}", "score": i * 1.5} for i in range(size)
        ]
        if keep:
            kept.extend(rows)
        done += size
        probe.progress(done, records)
    return done
