"""`memdiag snapshot`, `diff` and `leaks` end to end: real children, real measurements."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.conftest import memdiag

TARGETS = str(Path(__file__).with_name("leak_targets.py"))


def line_of(text: str) -> int:
    """Return the line of leak_targets.py that contains `text`."""
    lines = Path(TARGETS).read_text().splitlines()
    return next(i for i, line in enumerate(lines, 1) if text in line)


def leaks(tmp_path: Path, *args: str) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    out = tmp_path / "leaks.json"
    out.unlink(missing_ok=True)
    proc = memdiag(
        "leaks", "--iterations", "6", "--frames", "4", "--json", str(out), *args, cwd=tmp_path
    )
    assert out.exists(), proc.stdout + proc.stderr
    return proc, json.loads(out.read_text())


def test_python_leak_is_named_by_line_type_and_chain(tmp_path: Path) -> None:
    proc, report = leaks(tmp_path, f"{TARGETS}:leak", "--markdown", str(tmp_path / "l.md"))
    assert proc.returncode == 1, proc.stdout
    sites = {s["site"].rsplit("/", 1)[-1]: s for s in report["sites"]}
    errors, buffers = (
        f"leak_targets.py:{line_of('ERRORS.append')}",
        f"leak_targets.py:{line_of('bytearray(128')}",
    )
    assert sites[errors]["type"] == "str"
    assert sites[errors]["objects_per_iteration"] >= 299
    assert sites[buffers]["type"] == "bytearray"
    types = {t["name"]: t for t in report["types"]}
    assert types["str"]["chain"]["expression"].startswith("leak_targets.ERRORS[")
    assert types["bytearray"]["chain"]["root"] == "class attribute"
    assert "leak_targets.Registry.buffers[" in types["bytearray"]["chain"]["expression"]
    assert report["native"] is None
    assert errors in (tmp_path / "l.md").read_text()


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
    growth = report["growth_bytes_per_iteration"]  # 3,000 rows a call, from the untraced calls
    assert 500_000 < growth < 1_500_000, growth
    sites = {s["site"].rsplit("/", 1)[-1]: s for s in report["sites"]}
    site = sites[f"leak_targets.py:{line_of('rows = [{')}"]
    # Scaled up from the sample: within a factor 2 of the growth (unscaled, it is the share).
    assert 0.5 * growth < site["bytes_per_iteration"] < 2 * growth, (site, share)
    # Five allocations a kept row (the dict, its table, its str, int and float).
    assert 0.5 * 15_000 < site["objects_per_iteration"] < 2 * 15_000, site
    owner = report["owners"][0]
    assert owner["expression"] == "leak_targets.KEPT_DICTS", owner
    assert owner["share"] >= 0.8, owner
    assert {s["type"]: s["count"] for s in owner["path"]}.get("dict") == 3000, owner["path"]
    types = {t["name"]: t for t in report["types"]}
    for name in ("dict", "str"):
        assert types[name]["chain"]["expression"].startswith("leak_targets.KEPT_DICTS["), name


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
    assert report["unit"] == "interval" and report["native"]["rss_per_iteration"] > 2**20


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


def test_pid_view_covers_children(tmp_path: Path) -> None:
    code = (
        "import subprocess, sys, time\n"
        "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(30)'])\n"
        "time.sleep(30)"
    )
    parent = subprocess.Popen([sys.executable, "-c", code])
    try:
        import time

        time.sleep(0.5)
        proc = memdiag("snapshot", "--pid", str(parent.pid), "--json", str(tmp_path / "p.json"))
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
