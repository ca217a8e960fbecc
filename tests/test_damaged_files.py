"""Every loader survives damaged files: real saved files of each kind, mutated a few hundred
times (fixed seed), through the real `memdiag report`, `gate` and `diff`.

The bulk runs the CLI's own entry point in-process (`memdiag.cli.main`, the function the
`memdiag` script calls, which turns MemdiagError into one line and exit 2 and lets anything
else through as a traceback); a few cases go through a real subprocess. The saved files in
tests/data/saved/ were written by the commands themselves (run, sweep, snapshot, diff,
leaks, baseline, gate, monitor, and the pytest plugin).
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from memdiag.cli import main
from tests.conftest import memdiag

SAVED = Path(__file__).parent / "data" / "saved"
# kind → file, and how many mutations: a sweep that still loads renders its HTML report and
# plots (about a second), so its `report` sees fewer cases than the others.
KINDS = {
    "run": ("run.json", 200),
    "sweep": ("sweep.json", 40),
    "snapshot": ("snapshot.json", 200),
    "snapshot-diff": ("diff.json", 200),
    "leak-report": ("leaks.json", 200),
    "gate": ("gate.json", 200),
    "monitor": ("monitor.jsonl", 200),
    "pytest": ("pytest.json", 200),
    "baseline": ("baseline.json", 200),
}
ODD_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from([10**400, -1, 0, 2**63, math.nan, math.inf, -math.inf, 1e308]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.sampled_from(["", "‮evil", "💩" * 50, "\x00", "NaN", "1e999"]),
    st.just([]),
    st.just({}),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=4), st.integers(), max_size=2),
)


def read_saved(name: str) -> Any:
    text = (SAVED / name).read_text()
    if name.endswith(".jsonl"):
        return [json.loads(line) for line in text.splitlines()]
    return json.loads(text)


def dump(doc: Any, name: str) -> str:
    if name.endswith(".jsonl"):
        return "".join(json.dumps(line) + "\n" for line in doc)
    return json.dumps(doc, indent=1)


def places(doc: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Return the path of every value inside `doc` (keys and indexes from the top)."""
    found = [path] if path else []
    if isinstance(doc, dict):
        for key, value in doc.items():
            found += places(value, (*path, key))
    elif isinstance(doc, list):
        for index, value in enumerate(doc[:6]):
            found += places(value, (*path, index))
    return found


def mutate(doc: Any, path: tuple[Any, ...], how: str, value: Any) -> Any:
    """Return `doc` with the value at `path` dropped, replaced, nested or made odd."""
    if not path:
        return value
    head, rest = path[0], path[1:]
    copy: Any = dict(doc) if isinstance(doc, dict) else list(doc)
    if rest:
        copy[head] = mutate(copy[head], rest, how, value)
    elif how == "drop":
        del copy[head]
    elif how == "nest":
        copy[head] = [copy[head]] if isinstance(value, list) else {"value": copy[head]}
    else:
        copy[head] = value
    return copy


@st.composite
def damaged(draw: st.DrawFn, name: str) -> str:
    """Return the text of the saved file `name` with one to three kinds of damage."""
    doc = read_saved(name)
    for _ in range(draw(st.integers(1, 3))):
        spots = places(doc)
        if not spots:
            break
        how = draw(st.sampled_from(["drop", "retype", "retype", "nest"]))
        doc = mutate(doc, draw(st.sampled_from(spots)), how, draw(ODD_VALUES))
    text = dump(doc, name)
    if draw(st.integers(0, 9)) == 0:  # truncated, as by a full disk
        text = text[: draw(st.integers(0, len(text)))]
    return text


def run_cli(argv: list[str]) -> tuple[int, str]:
    """Return the exit code and stderr of `memdiag ARGV` run in this process."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            main(argv)
        except SystemExit as exc:
            return int(exc.code or 0), err.getvalue()
    raise AssertionError("memdiag's main returned without exiting")


def check_commands(path: Path, work: Path) -> None:
    """Run report, gate (as results and as baseline) and diff on `path`: each ends with a
    result (0, or 1 for a gate that finds a regression) or one line naming the file (2)."""
    real = {name: str(SAVED / name) for name in ("run.json", "baseline.json", "snapshot.json")}
    commands: list[tuple[list[str], tuple[int, ...]]] = [
        (["report", str(path), "--out", str(work / "report")], (0, 2)),
        (["gate", str(path), "--baseline", real["baseline.json"]], (0, 1, 2)),
        (["gate", real["run.json"], "--baseline", str(path)], (0, 1, 2)),
        (["diff", str(path), real["snapshot.json"]], (0, 2)),
    ]
    for argv, allowed in commands:
        code, stderr = run_cli(argv)
        assert code in allowed, (argv, code, stderr, path.read_text()[:2000])
        if code == 2:
            lines = stderr.strip().splitlines()
            assert len(lines) == 1 and lines[0].startswith("memdiag: error: "), stderr
            assert "Traceback" not in stderr and "__init__()" not in stderr, stderr


def fuzz(kind: str) -> Callable[[], None]:
    name, examples = KINDS[kind]

    @settings(
        max_examples=examples,
        derandomize=True,
        database=None,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(text=damaged(name))
    def run(text: str) -> None:
        work = WORK / kind
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        path = work / name
        path.write_text(text)
        check_commands(path, work)

    return run


WORK = Path()


@pytest.mark.parametrize("kind", list(KINDS))
def test_damaged_files_give_a_result_or_one_line(
    kind: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    global WORK
    WORK = tmp_path_factory.mktemp("damaged")
    fuzz(kind)()


@pytest.mark.parametrize("kind", list(KINDS))
def test_the_saved_files_themselves_load(kind: str, tmp_path: Path) -> None:
    name, _ = KINDS[kind]
    code, stderr = run_cli(["report", str(SAVED / name), "--out", str(tmp_path)])
    assert code == 0, stderr


def test_a_field_of_the_wrong_type_is_named(tmp_path: Path) -> None:
    sweep = read_saved("sweep.json")
    path = tmp_path / "sweep.json"
    path.write_text(json.dumps({**sweep, "runs": "abc"}))
    for argv in (["report", str(path)], ["gate", str(path), "--baseline", str(path)]):
        code, stderr = run_cli(argv)
        assert (code, stderr) == (
            2,
            f"memdiag: error: {path}: runs: expected a list, got a string\n",
        )
    run = read_saved("run.json")
    run["timeline"][1][1] = "12MB"
    path.write_text(json.dumps(run))
    code, stderr = run_cli(["report", str(path)])
    assert code == 2
    assert stderr.endswith(": timeline[1].rss_bytes: expected an integer, got a string\n")


@pytest.mark.parametrize(
    ("name", "change", "field"),
    [
        ("sweep.json", {"runs": "abc"}, "runs: expected a list, got a string"),
        ("leaks.json", {"sites": [{"site": "x"}]}, "sites[0].traceback: missing"),
        ("snapshot.json", {"rss_bytes": math.nan}, "rss_bytes: expected an integer, got NaN"),
    ],
)
def test_a_real_memdiag_prints_one_line_and_exits_2(
    name: str, change: dict[str, Any], field: str, tmp_path: Path
) -> None:
    path = tmp_path / name
    path.write_text(json.dumps({**read_saved(name), **change}))
    proc = memdiag("report", str(path))
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr == f"memdiag: error: {path}: {field}\n"
