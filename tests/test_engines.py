"""The reference engines, run for real through `memdiag run` in a subprocess.

Each engine is measured at two workload sizes 4x apart, bad and fixed variant, on a SQLite
file the test then inspects. Peaks are the kernel's (ru_maxrss), so the margins below allow
for a noisy 2-core machine: the bad variant must grow by a clear amount, the fixed one by at
most a third of that.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from memdiag_plugins.player_sync import player_record

from tests.conftest import MB, memdiag


@dataclass(frozen=True)
class Case:
    engine: str
    size: str  # the parameter that sets the workload
    small: int
    bad: str
    fixed: str
    min_growth_mb: float  # least growth of the bad variant from small to 4x small
    params: tuple[str, ...] = ()


CASES = [
    Case("player-sync", "records", 2_500, "leaky", "fixed", 20),
    Case("import", "records", 100, "accumulate", "stream", 40),
    Case("migration", "items", 4_000, "full", "slim", 15),
    Case("record-sync", "cycles", 30, "leaky", "cleared", 8, ("batch=1000",)),
    Case("parallel", "items", 200, "accumulate", "stream", 40),
]
BY_NAME = {case.engine: case for case in CASES}


def run_engine(
    engine: str, out: Path, *params: str, timeout: float | None = None
) -> tuple[int, dict[str, Any]]:
    """Run `engine` with `params`; return the exit code and the Run JSON."""
    args = ["run", engine, "--json", str(out), "-q"]
    args += [arg for param in params for arg in ("--param", param)]
    if timeout is not None:
        args += ["--timeout", str(timeout)]
    done = memdiag(*args)
    assert out.exists(), done.stderr
    return done.returncode, json.loads(out.read_text())


def count(db: Path, sql: str) -> int:
    with sqlite3.connect(db) as conn:
        value = conn.execute(sql).fetchone()[0]
    return int(value)


def expected_rows(engine: str, size: int, params: dict[str, str]) -> dict[str, int]:
    """Return the row count per table one run of `engine` at `size` must leave behind."""
    if engine == "player-sync":
        valid = sum(player_record(1, i, 0.2)["email"] is not None for i in range(size))
        return {"players": valid, "checkpoints": 1}
    if engine == "import":
        return {"import_players": size, "games": size * 5, "game_participants": size * 50}
    if engine == "migration":
        return {"source_items": size, "target_items": size}
    if engine == "record-sync":
        return {"sync_records": size * int(params.get("batch", 500))}
    return {"fixtures": size * 10}


@pytest.fixture(scope="module")
def measured(tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, str, int], Any]:
    """Run every engine, bad and fixed, at its small and 4x size, once for the module."""
    results = {}
    for case in CASES:
        for variant in (case.bad, case.fixed):
            for size in (case.small, 4 * case.small):
                tmp = tmp_path_factory.mktemp(f"{case.engine}-{variant}-{size}")
                db = tmp / "engine.db"
                params = (f"{case.size}={size}", f"variant={variant}", f"db=sqlite:///{db}")
                code, run = run_engine(case.engine, tmp / "run.json", *params, *case.params)
                results[case.engine, variant, size] = (code, run, db)
    return results


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.engine)
def test_bad_variant_peak_grows_with_size_and_fixed_barely(
    case: Case, measured: dict[tuple[str, str, int], Any]
) -> None:
    peaks = {}
    for variant in (case.bad, case.fixed):
        for size in (case.small, 4 * case.small):
            code, run, _ = measured[case.engine, variant, size]
            assert (code, run["status"]) == (0, "ok"), run["error"]
            peaks[variant, size] = run["peak_rss_bytes"] / MB
    bad = peaks[case.bad, 4 * case.small] - peaks[case.bad, case.small]
    fixed = peaks[case.fixed, 4 * case.small] - peaks[case.fixed, case.small]
    shown = {f"{v}@{s}": round(p, 1) for (v, s), p in peaks.items()}
    print(f"{case.engine} peak MB: {shown}")
    assert bad >= case.min_growth_mb, f"{case.bad} grew only {bad:.1f} MB: {shown}"
    assert fixed <= bad / 3, f"{case.fixed} grew {fixed:.1f} MB vs {bad:.1f} MB: {shown}"
    assert peaks[case.fixed, 4 * case.small] < peaks[case.bad, 4 * case.small]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.engine)
def test_database_holds_exactly_the_expected_rows(
    case: Case, measured: dict[tuple[str, str, int], Any]
) -> None:
    extra = dict(p.split("=", 1) for p in case.params)
    for variant in (case.bad, case.fixed):
        for size in (case.small, 4 * case.small):
            _, run, db = measured[case.engine, variant, size]
            for table, rows in expected_rows(case.engine, size, extra).items():
                assert count(db, f"SELECT count(*) FROM {table}") == rows, (variant, size, table)
            assert run["records"] >= size


def test_player_sync_distinct_and_written_once(
    measured: dict[tuple[str, str, int], Any],
) -> None:
    _, _, db = measured["player-sync", "leaky", 2_500]
    assert count(db, "SELECT count(*) FROM players WHERE writes != 1") == 0
    assert count(db, "SELECT count(*) FROM players WHERE email IS NULL") == 0
    assert count(db, "SELECT next_record FROM checkpoints") == 2_500
    _, _, db = measured["migration", "full", 4_000]
    assert count(db, "SELECT count(DISTINCT match_value) FROM target_items") == 4_000


def test_player_sync_killed_midway_resumes_without_loss_or_duplicates(tmp_path: Path) -> None:
    db = tmp_path / "sync.db"
    params = ("records=20000", "variant=fixed", "latency=0.005", f"db=sqlite:///{db}")
    code, run = run_engine("player-sync", tmp_path / "killed.json", *params, timeout=1.5)
    assert (code, run["status"]) == (1, "timeout")
    expected = expected_rows("player-sync", 20_000, {})["players"]
    partial = count(db, "SELECT count(*) FROM players")
    assert 0 < partial < expected
    code, run = run_engine("player-sync", tmp_path / "resumed.json", *params, "resume=true")
    assert (code, run["status"]) == (0, "ok"), run["error"]
    assert run["records"] < 20_000  # it resumed, it did not start again
    assert count(db, "SELECT count(*) FROM players") == expected
    assert count(db, "SELECT count(*) FROM players WHERE writes != 1") == 0
    assert count(db, "SELECT next_record FROM checkpoints") == 20_000


BAD_INPUTS = [
    ("variant=nope", "unknown variant 'nope'"),
    ("batch=0", "batch must be >= 1"),
    ("db=postgresql://u:p@127.0.0.1:1/x", "cannot connect to postgresql"),
]


@pytest.mark.parametrize("bad_input", BAD_INPUTS, ids=[b[0].split("=")[0] for b in BAD_INPUTS])
@pytest.mark.parametrize("engine", list(BY_NAME))
def test_bad_input_is_a_recorded_error_not_a_hang(
    engine: str, bad_input: tuple[str, str], tmp_path: Path
) -> None:
    param, message = bad_input
    started = time.monotonic()
    code, run = run_engine(engine, tmp_path / "run.json", param)
    assert time.monotonic() - started < 30
    assert (code, run["status"]) == (1, "error")
    assert message in run["error"]["message"]
    assert "password" not in run["error"]["message"] and ":p@" not in run["error"]["message"]


# Each variant's defaults as measured (make test's machine, 2 CPUs, 2 runs under a load of
# about 10): the job's CPU seconds (the larger run) and its peak in MB. CPU time, not wall:
# on a shared machine the wall doubled between runs (6-14 s), the CPU time moved by 25%.
DEFAULTS_MEASURED = {
    ("player-sync", "leaky"): (3.6, 155),
    ("player-sync", "fixed"): (3.5, 51),
    ("import", "accumulate"): (13.3, 333),
    ("import", "stream"): (10.4, 59),
    ("migration", "full"): (6.9, 123),
    ("migration", "slim"): (5.7, 65),
    ("record-sync", "leaky"): (6.3, 72),
    ("record-sync", "cleared"): (6.0, 53),
    ("parallel", "accumulate"): (6.9, 321),
    ("parallel", "stream"): (5.8, 50),
}
# Margins that absorb the noise above, while twice the work or twice the memory fails.
CPU_MARGIN, PEAK_MARGIN = 1.6, 1.3


@pytest.mark.slow
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.engine)
def test_defaults_finish_quickly_and_well_under_the_budget(case: Case, tmp_path: Path) -> None:
    for variant in (case.bad, case.fixed):
        code, run = run_engine(case.engine, tmp_path / f"{variant}.json", f"variant={variant}")
        assert (code, run["status"]) == (0, "ok"), run["error"]
        peak = run["peak_rss_bytes"] / MB
        cpu, expected_peak = DEFAULTS_MEASURED[case.engine, variant]
        shown = f"{run['wall_s']:.1f} s, {run['cpu_s']:.1f} s CPU, {peak:.0f} MB"
        print(f"{case.engine} {variant} defaults: {shown}")
        assert run["cpu_s"] < cpu * CPU_MARGIN, shown
        assert expected_peak / PEAK_MARGIN < peak < expected_peak * PEAK_MARGIN, shown


PG_URL = os.environ.get("MEMDIAG_TEST_PG_URL")
PG_SIZES = {"player-sync": 1_000, "import": 50, "migration": 1_000, "record-sync": 10}


@pytest.mark.postgres
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.engine)
def test_engine_on_postgresql(case: Case, tmp_path: Path) -> None:
    from sqlalchemy import create_engine, text

    size = PG_SIZES.get(case.engine, 50)
    params = (f"{case.size}={size}", f"variant={case.fixed}", f"db={PG_URL}")
    code, run = run_engine(case.engine, tmp_path / "run.json", *params)
    assert (code, run["status"]) == (0, "ok"), run["error"]
    engine = create_engine(str(PG_URL).replace("postgresql://", "postgresql+psycopg://", 1))
    try:
        with engine.connect() as conn:
            for table, rows in expected_rows(case.engine, size, {}).items():
                assert conn.execute(text(f"SELECT count(*) FROM {table}")).scalar() == rows
    finally:
        engine.dispose()
