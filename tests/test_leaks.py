"""`memdiag snapshot`, `diff` and `leaks` end to end: real children, real measurements."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import leaks_json, line_in, memdiag

TARGETS = str(Path(__file__).with_name("leak_targets.py"))


def line_of(text: str) -> int:
    """Return the line of leak_targets.py that contains `text`."""
    return line_in(Path(TARGETS).read_text(), text)


def leaks(tmp_path: Path, *args: str) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    return leaks_json("--iterations", "6", "--frames", "4", *args, cwd=tmp_path)


def test_python_leak_is_named_by_line_type_and_chain(tmp_path: Path) -> None:
    proc, report = leaks(tmp_path, f"{TARGETS}:leak", "--markdown", str(tmp_path / "l.md"))
    assert proc.returncode == 1, proc.stdout
    sites = {s["site"].rsplit("/", 1)[-1]: s for s in report["sites"]}
    errors, buffers = (
        f"leak_targets.py:{line_of('ERRORS.append')}",
        f"leak_targets.py:{line_of('bytearray(128')}",
    )
    assert sites[errors]["type"] == "str"
    assert 299 <= sites[errors]["objects_per_iteration"] <= 310  # 300 strings a call
    assert sites[buffers]["type"] == "bytearray"
    types = {t["name"]: t for t in report["types"]}
    assert types["str"]["chain"]["expression"].startswith("leak_targets.ERRORS[")
    assert types["bytearray"]["chain"]["root"] == "class attribute"
    assert "leak_targets.Registry.buffers[" in types["bytearray"]["chain"]["expression"]
    assert report["native"] is None
    assert errors in (tmp_path / "l.md").read_text()


def test_timings_say_where_the_time_went(tmp_path: Path) -> None:
    proc, report = leaks(tmp_path, f"{TARGETS}:leak", "--verbose")
    assert proc.returncode == 1, proc.stdout
    timings = report["timings"]
    stages = {"calls", "traced_call", "snapshot_pauses", "snapshot_copies", "request_wait"}
    stages |= {"evidence", "evidence_chains", "evidence_owners", "child", "analysis", "report"}
    assert stages <= set(timings), timings
    assert all(v >= 0 for v in timings.values())
    # The child's stages run one after another inside it: together no longer than it ran;
    # but the evidence's copy finds the new objects while the last snapshot's copy finishes.
    serial = ("calls", "traced_call", "snapshot_pauses", "new_ids", "request_wait", "evidence")
    serial_s = sum(timings.get(k, 0.0) for k in serial) - timings["evidence_newness"]
    assert 0 < serial_s <= timings["child"] * 1.05
    assert timings["snapshot_waits"] <= timings["snapshot_pauses"]
    parts = ("evidence_newness", "evidence_samples", "evidence_chains", "evidence_owners")
    assert sum(timings[k] for k in parts) <= timings["evidence"] * 1.05
    assert "where the time went" in proc.stdout and "the traced call" in proc.stdout
    quiet = memdiag("leaks", f"{TARGETS}:leak", "--iterations", "6", cwd=tmp_path)
    assert "where the time went" not in quiet.stdout


def snapshot_files(out: Path) -> list[dict[str, Any]]:
    return [json.loads(path.read_text()) for path in sorted(out.glob("iter-*.json"))]


def test_snapshots_leave_out_the_full_collection_only_where_it_would_free_nothing(
    tmp_path: Path,
) -> None:
    # No cyclic garbage: between the first and the last snapshot only the young generations
    # are collected, and what a full collection would keep is counted.
    out = tmp_path / "grows"
    proc, report = leaks(tmp_path, f"{TARGETS}:processed_keys", "--out", str(out))
    assert proc.returncode == 1 and report["types"][0]["name"] == "str", proc.stdout
    shots = snapshot_files(out)
    assert [s["full_collection"] for s in shots] == [True, False, False, False, False, False, True]
    assert all(s["unreachable_objects"] == 0 for s in shots[1:-1])
    assert not (out / "cyclic-garbage").exists()
    # Cyclic garbage that only a full collection frees (a bounded cache evicting pairs): the
    # first copy to find it says so, and every snapshot after it collects fully; nothing
    # leaks, the pairs the cache drops are not counted.
    out = tmp_path / "evicts"
    proc, report = leaks(tmp_path, f"{TARGETS}:evicts_cycles", "--out", str(out))
    assert proc.returncode == 0 and not report["found"], proc.stdout
    shots = snapshot_files(out)
    found = next(i for i, s in enumerate(shots) if s.get("unreachable_objects"))
    assert shots[found]["unreachable_objects"] >= 2 * 500  # one call's evicted pairs
    assert all(s["full_collection"] for s in shots[found + 1 :])
    assert (out / "cyclic-garbage").exists()
    pairs = [sum(t["count"] for t in s["types"] if t["name"] == "leak_targets.Pair") for s in shots]
    assert pairs[2:] == [2000] * 5, pairs  # the cache's 1,000 pairs, two objects each


def test_the_copies_beside_the_calls_run_idle_the_one_waited_for_at_once_does_not(
    tmp_path: Path,
) -> None:
    out = tmp_path / "paced"
    proc, report = leaks(tmp_path, f"{TARGETS}:paced", "--iterations", "5", "--out", str(out))
    assert proc.returncode == 0 and not report["found"], proc.stdout
    shots = snapshot_files(out)
    assert len(shots) == 6
    # Each copy beside a call of 0.2 s takes only spare CPU (SCHED_IDLE). One the job waited
    # for is put back to a normal share: a busy machine can make some not idle at the end.
    assert any(s["copy_idle"] for s in shots[:-1]), [s["copy_idle"] for s in shots]
    # The last copy, waited for at once, is never put under SCHED_IDLE. (Set by the copy
    # itself, it came after the job's wait had put it back, and it ran idle-only.)
    assert shots[-1]["copy_idle"] is False, [s["copy_idle"] for s in shots]


def test_one_growing_object_is_a_leak(tmp_path: Path) -> None:
    for target, line, kind, holder in [
        ("one_buffer", "BUFFER.extend", "bytearray", "BUFFER"),
        ("one_list", "ROWS.extend", "list", "ROWS"),
    ]:
        proc, report = leaks(tmp_path, f"{TARGETS}:{target}")
        assert proc.returncode == 1, proc.stdout
        sites = {s["site"].rsplit("/", 1)[-1]: s for s in report["sites"]}
        site = sites[f"leak_targets.py:{line_of(line)}"]
        assert 0.9 * 2**20 < site["bytes_per_iteration"] < 1.3 * 2**20, site
        assert site["objects_per_iteration"] < 1
        types = {t["name"]: t for t in report["types"]}
        assert 0.9 * 2**20 < types[kind]["bytes_per_iteration"] < 1.3 * 2**20, types
        assert types[kind]["chain"]["expression"] == f"leak_targets.{holder}", types[kind]
        assert report["native"] is None


def test_allocation_heavy_call_is_traced_in_slices(tmp_path: Path) -> None:
    """Tracing the last call whole would cost ten times the call: past one call's time it is
    traced in slices, and the sample still names the line, its size and the owner."""
    proc, report = leaks(tmp_path, f"{TARGETS}:churn_kept", "--vary", "seed")
    assert proc.returncode == 1, proc.stdout
    share = report["traced_share"]
    assert share is not None and 0.01 < share < 0.9, share
    assert "the last call was traced in slices" in proc.stdout
    # 3,000 rows a call, from the untraced calls: tracemalloc counts 930 KB a call
    growth = report["growth_bytes_per_iteration"]
    assert 700_000 < growth < 1_200_000, growth
    sites = {s["site"].rsplit("/", 1)[-1]: s for s in report["sites"]}
    site = sites[f"leak_targets.py:{line_of('rows = [{')}"]
    # Scaled up from the sample: within 40% of the growth (unscaled, it is the share).
    assert 0.7 * growth < site["bytes_per_iteration"] < 1.4 * growth, (site, share)
    # Five allocations a kept row (the dict, its table, its str, int and float).
    assert 0.7 * 15_000 < site["objects_per_iteration"] < 1.4 * 15_000, site
    owner = report["owners"][0]
    assert owner["expression"] == "leak_targets.KEPT_DICTS", owner
    assert owner["share"] >= 0.8, owner
    assert {s["type"]: s["count"] for s in owner["path"]}.get("dict") == 3000, owner["path"]
    types = {t["name"]: t for t in report["types"]}
    for name in ("dict", "str"):
        assert types[name]["chain"]["expression"].startswith("leak_targets.KEPT_DICTS["), name


def test_a_sliced_call_counts_realloc_finished_objects_like_any_other(tmp_path: Path) -> None:
    """Objects finished by a realloc (%-formatted strings) are sampled at the same share as
    the rest (f-strings): the untraced slices realloc untraced too. They used to be traced
    always, counted at 10 times the f-strings' share, and the site held the list's table."""
    proc, report = leaks(tmp_path, f"{TARGETS}:two_formats", "--vary", "seed")
    assert proc.returncode == 1, proc.stdout
    share = report["traced_share"]
    assert share is not None and share < 0.5, share  # a sample: traced in slices
    sites = {s["site"].rsplit("/", 1)[-1]: s for s in report["sites"]}
    for line in ('"record %08d', 'f"record {n'):
        site = sites[f"leak_targets.py:{line_of(line)}"]
        assert site["type"] == "str", site
        # 3,000 a call each: a realloc-biased sample gives 0 or 10× for the first
        assert 0.8 * 3000 <= site["objects_per_iteration"] <= 1.25 * 3000, (line, site, share)


def test_a_logger_per_request_is_named_from_logging_itself(tmp_path: Path) -> None:
    """The manager's table of loggers is reached from every logger, the module's own
    `LOG` too: it is spelled from its home, `logging.root.manager.loggerDict`, and a leaked
    logger as `logging.getLogger(name)`, not through whichever module's logger came first."""
    proc, report = leaks(tmp_path, f"{TARGETS}:named_loggers", "--vary", "seed")
    assert proc.returncode == 1, proc.stdout
    assert report["owners"][0]["expression"] == "logging.root.manager.loggerDict", report["owners"]
    types = {t["name"]: t for t in report["types"]}
    chain = types["logging.Logger"]["chain"]
    assert chain["expression"].startswith("logging.getLogger('job.request-"), chain
    assert chain["root"] == "registry"


@pytest.mark.parametrize(("error", "status"), [("value", "error"), ("memory", "oom")])
def test_a_failing_traced_call_gives_its_error_and_a_partial_report(
    tmp_path: Path, error: str, status: str
) -> None:
    """The last call, traced in slices, raises: the child lives on to say what grew in the
    calls before it, and the job's own exception is the report's error."""
    proc, report = leaks(tmp_path, f"{TARGETS}:fails_on", "--param", f"error={error}")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "SIGSEGV" not in proc.stdout + proc.stderr
    message = "MemoryError: no room" if error == "memory" else "ValueError: bad record 7"
    assert report["status"] == status and report["error"].startswith(message), report["error"]
    assert report["partial"] is True and report["stopped_by"] == "error"
    assert report["snapshots"] == 6  # before the first call and after each of the five
    assert "iteration 6 failed after 5 of 6" in proc.stderr
    types = {t["name"]: t for t in report["types"]}
    assert 850 < types["dict"]["objects_per_iteration"] < 950, types  # 900 kept rows a call
    assert report["chain_search"] is not None  # the live process was analysed after it
    assert report["sites"] == []  # an unfinished traced call's sites are not one call's


def test_pythontracemalloc_is_not_passed_to_the_job(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With it, the child would trace from start-up: every call, the untraced ones too."""
    monkeypatch.setenv("PYTHONTRACEMALLOC", "5")
    seen = tmp_path / "tracing.txt"
    proc, report = leaks(tmp_path, f"{TARGETS}:tracing_seen", "--param", f"path={seen}")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert seen.read_text().split() == ["False"] * 5 + ["True"], seen.read_text()
    # The only note on the environment (a busy machine may add its own, below).
    (note,) = [n for n in report["notes"] if not n.startswith("the machine was busy")]
    assert note.startswith("PYTHONTRACEMALLOC=5 is not passed to the job"), note
    assert "PYTHONTRACEMALLOC=5 is not passed" in proc.stdout


def test_a_busy_machine_is_said_in_the_notes(monkeypatch: pytest.MonkeyPatch) -> None:
    from memdiag.cli.leaks import _busy_note

    cores = len(os.sched_getaffinity(0))
    monkeypatch.setattr(os, "getloadavg", lambda: (cores + 1.5, 0.0, 0.0))
    assert _busy_note() == []  # the job and its copy are expected
    monkeypatch.setattr(os, "getloadavg", lambda: (cores + 3.0, 0.0, 0.0))
    (note,) = _busy_note()
    assert note.startswith(f"the machine was busy: load average {cores + 3.0:.1f} on {cores}")


def test_allocators_that_cannot_be_sliced_are_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Under the allocators' debug hooks the last call is traced whole however long it
    takes: the report says so, and why."""
    monkeypatch.setenv("PYTHONMALLOC", "debug")
    proc, report = leaks(
        tmp_path, f"{TARGETS}:churn_kept", "--vary", "seed", "--param", "count=30000"
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert report["traced_share"] is None
    assert report["traced_whole"].startswith("PYTHONMALLOC=debug: slices need"), report
    assert "the last call was traced whole: PYTHONMALLOC=debug" in proc.stdout
    monkeypatch.delenv("PYTHONMALLOC")
    proc, report = leaks(
        tmp_path, f"{TARGETS}:churn_kept", "--vary", "seed", "--param", "count=30000"
    )
    assert report["traced_whole"] is None and report["traced_share"] is not None, report


def test_warming_caches_are_not_leaks_and_no_fail(tmp_path: Path) -> None:
    proc, report = leaks(tmp_path, f"{TARGETS}:clean")
    assert proc.returncode == 0 and not report["found"], proc.stdout
    proc, report = leaks(tmp_path, f"{TARGETS}:leak", "--no-fail")
    assert proc.returncode == 0 and report["found"]


def test_native_leak_is_native_growth_not_a_python_line(tmp_path: Path) -> None:
    md = tmp_path / "native.md"
    proc, report = leaks(tmp_path, f"{TARGETS}:native", "--param", "mb=4", "--markdown", str(md))
    assert proc.returncode == 1
    assert report["sites"] == [] and report["types"] == []
    assert 3.5 * 2**20 < report["native"]["native_per_iteration"] < 4.5 * 2**20
    assert "outside Python objects" in md.read_text() and "--memray --native" in md.read_text()


def test_external_command_sampled_every_interval(tmp_path: Path) -> None:
    code = (
        "import time\nheld = []\nwhile True:\n"
        "    b = bytearray(2 << 20); b[::4096] = b'1' * len(range(0, len(b), 4096))\n"
        "    held.append(b); time.sleep(0.2)"
    )
    proc, report = leaks(
        tmp_path, "--every", "0.2", "--iterations", "12", "--", sys.executable, "-c", code
    )
    assert proc.returncode == 1, proc.stdout
    assert report["unit"] == "interval"  # 2 MB every 0.2 s, sampled every 0.2 s
    assert 2**20 < report["native"]["rss_per_iteration"] < 3 * 2**20


def test_snapshot_at_phases_then_diff(tmp_path: Path) -> None:
    out = tmp_path / "snap"
    proc = memdiag("snapshot", f"{TARGETS}:phased", "--at-phase", "--out", str(out), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    names = sorted(p.name for p in out.iterdir())
    assert names[0] == "after.json" and "before.json" in names
    assert [n for n in names if n.startswith("phase-")] == [
        "phase-01-fetch.json",
        "phase-02-None.json",
        "phase-03-write.json",
        "phase-04-None.json",
    ]
    after = json.loads((out / "after.json").read_text())
    assert after["kind"] == "snapshot" and after["schema_version"] == 1
    assert after["uss_bytes"] > 0 and after["heap_bytes"] > 0 and after["types"]
    assert "allocation sites that grew" in proc.stdout
    diff = memdiag(
        "diff", str(out / "phase-01-fetch.json"), str(out / "phase-02-None.json"), "--json", "-"
    )
    grown = json.loads(diff.stdout)
    assert diff.returncode == 0 and grown["kind"] == "snapshot-diff"
    assert any(
        s["traceback"][-1][1] == line_of('"y" * 200') for s in grown["sites"]
    )  # the rows of "fetch"


def test_bad_snapshot_files_exit_2(tmp_path: Path) -> None:
    good = {"schema_version": 1, "kind": "snapshot", "label": "a", "time_s": 0.0}
    files = {
        "corrupt": "{not json",
        "foreign": json.dumps({"hello": 1}),
        "newer": json.dumps({**good, "schema_version": 99}),
        "run": json.dumps({**good, "kind": "run"}),
        "damaged": json.dumps({**good, "sites": [{"nope": 1}]}),
    }
    (tmp_path / "good.json").write_text(json.dumps(good))
    for name, text in files.items():
        (tmp_path / f"{name}.json").write_text(text)
        proc = memdiag("diff", str(tmp_path / "good.json"), str(tmp_path / f"{name}.json"))
        assert proc.returncode == 2, (name, proc.stderr)
        assert len(proc.stderr.strip().splitlines()) == 1 and name in proc.stderr
    assert memdiag("diff", str(tmp_path / "good.json"), str(tmp_path / "good.json")).returncode == 0


def test_pid_view_covers_children(tmp_path: Path, gdb_broken: str | None) -> None:
    code = (
        "import subprocess, sys, time\n"
        "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(30)'])\n"
        "time.sleep(30)"
    )
    parent = subprocess.Popen([sys.executable, "-c", code])
    try:
        import time

        time.sleep(0.5)
        args = ("snapshot", "--pid", str(parent.pid), "--inject")
        proc = memdiag(*args, "--json", str(tmp_path / "p.json"))
        view = json.loads((tmp_path / "p.json").read_text())
    finally:
        for child in __import__("psutil").Process(parent.pid).children(recursive=True):
            child.kill()
        parent.kill()
        parent.wait()
    assert proc.returncode == 0, proc.stderr
    assert len(view["processes"]) == 2
    assert view["uss_bytes"] <= view["pss_bytes"] <= view["rss_bytes"]
    assert {"heap", "anonymous", "file"} <= set(view["regions"])
    assert "1 descendants" in proc.stdout
    if gdb_broken:  # gdb cannot call functions here (tests/test_attach.py): the view alone
        assert view["attached"] is None and "the /proc view only: gdb cannot" in proc.stderr
    else:
        # A CPython parent is also looked at from inside: the tree's view and its heap.
        assert view["attached"] is not None and view["types"]
        assert "largest types" in proc.stdout
    assert memdiag("snapshot", "--pid", str(2**22 + os.getpid())).returncode == 2


def test_memray_flame_graph(tmp_path: Path) -> None:
    out = tmp_path / "m"
    proc = memdiag("snapshot", f"{TARGETS}:leak", "--memray", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    html = (out / "flamegraph.html").read_text()
    assert "leak_targets.py" in html


def test_reference_chain_drawn_when_graphviz_is_installed(tmp_path: Path) -> None:
    graphs = tmp_path / "evidence"
    proc, report = leaks(tmp_path, f"{TARGETS}:leak", "--out", str(graphs))
    assert proc.returncode == 1
    pngs = sorted(graphs.glob("chain-*.png"))
    chains = [t["chain"] for t in report["types"] if t.get("chain")]
    assert chains and all(c["root"] for c in chains)  # the text chain never needs graphviz
    if shutil.which("dot") is None:
        assert pngs == []
    else:
        assert pngs and all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in pngs)


@pytest.mark.parametrize("command", ["leaks", "snapshot"])
def test_the_child_ends_as_the_job_expects_without_freeing_its_heap(
    tmp_path: Path, command: str
) -> None:
    """The child skips freeing the heap at its exit (nothing measures it), but not what the
    interpreter's exit does first: threads waited for, atexit handlers, streams flushed."""
    ended = tmp_path / "ended.txt"
    target = [f"{TARGETS}:ends_its_way", "--param", f"path={ended}"]
    if command == "leaks":
        proc, _ = leaks_json("--iterations", "5", *target, cwd=tmp_path)
    else:
        proc = memdiag("snapshot", *target, "--out", str(tmp_path / "s.json"), cwd=tmp_path)
        assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = ended.read_text().splitlines()
    # One thread per call after the first, each written before the handler: it waited.
    assert lines == ["thread"] * (lines.count("thread")) + ["atexit"], lines
    assert lines.count("thread") == (4 if command == "leaks" else 0), lines
    assert "unflushed" in proc.stdout + proc.stderr
