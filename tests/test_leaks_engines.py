"""`memdiag leaks` on the reference engines: every bad variant named, no false alarms.

Runs two at a time (the machine has few cores; each run is one single-threaded child).
"""

from __future__ import annotations

import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import leaks_json

# engine -> (bad params, fixed params, what must be named: engine file, holder in the chain)
ENGINES: dict[str, tuple[list[str], list[str], str, str]] = {
    "player-sync": (
        ["variant=leaky", "records=500"],
        ["variant=fixed", "records=500"],
        "player_sync.py",
        "SourceClient.open_clients",
    ),
    "record-sync": (
        ["variant=leaky", "cycles=10", "batch=100"],
        ["variant=cleared", "cycles=10", "batch=100"],
        "record_sync.py",
        "RecordSyncService.processed",
    ),
    "migration": (
        ["variant=full", "items=200"],
        ["variant=slim", "items=200"],
        "migration.py",
        "migration.JOBS[",
    ),
    "parallel": (
        ["variant=accumulate", "items=20"],
        ["variant=stream", "items=20"],
        "parallel.py",
        "parallel.ALL_RESULTS[",
    ),
    "import": (
        ["variant=accumulate", "records=10"],
        ["variant=stream", "records=10"],
        "import_job.py",
        "ImportJob.fetched[",
    ),
}
# migration's cache values are built deep inside SQLAlchemy's row decoding.
FRAMES = {"migration": "12"}


def leaks(engine: str, params: list[str]) -> tuple[int, dict[str, Any], str]:
    with tempfile.TemporaryDirectory() as tmp:
        args = [arg for p in params for arg in ("--param", p)]
        # --vary seed: every call gets new records, as a long-running service does; without
        # it record-sync's second call only sees keys it has already processed.
        frames = FRAMES.get(engine, "4")
        proc, report = leaks_json(
            engine, *args, "--iterations", "6", "--frames", frames, "--vary", "seed", cwd=Path(tmp)
        )
        return proc.returncode, report, proc.stdout


@pytest.mark.slow
def test_bad_variants_are_named_by_line_type_and_holder() -> None:
    with ThreadPoolExecutor(2) as pool:
        results = dict(
            zip(ENGINES, pool.map(lambda e: leaks(e, ENGINES[e][0]), ENGINES), strict=True)
        )
    for engine, (code, report, stdout) in results.items():
        _, _, filename, holder = ENGINES[engine]
        assert code == 1, (engine, stdout)
        assert report["sites"] and report["types"], engine
        # The responsible line: a leaking site whose traceback passes through the engine.
        assert any(filename in frame[0] for s in report["sites"] for frame in s["traceback"]), (
            engine
        )
        assert all(s["type"] for s in report["sites"][:3]), engine
        chains = [t["chain"]["expression"] for t in report["types"] if t["chain"]]
        assert any(holder in c for c in chains), (engine, chains)
        assert report["native"] is None, engine


@pytest.mark.slow
def test_fixed_variants_raise_no_alarm_five_runs_in_a_row() -> None:
    runs = [(engine, fixed) for _ in range(5) for engine, (_, fixed, _, _) in ENGINES.items()]
    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(lambda run: leaks(*run), runs))
    alarms = [
        (engine, report["sites"][:2], report["types"][:2], report["native"])
        for (engine, _), (code, report, _) in zip(runs, results, strict=True)
        if code != 0 or report["found"]
    ]
    assert not alarms
