"""memdiag stays light: --help and the probe import nothing heavy."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

HEAVY = ("matplotlib", "memray", "sqlalchemy", "jinja2", "objgraph", "rich", "psutil")


def loaded_after(code: str) -> set[str]:
    probe = f"{code}\nimport sys, json\nprint(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    return set(json.loads(out.stdout.strip().splitlines()[-1]))


def test_help_imports_no_heavy_library() -> None:
    code = (
        "import sys\nfrom memdiag.cli import cli\n"
        "try:\n    cli.main(['--help'], standalone_mode=False)\nexcept SystemExit:\n    pass"
    )
    modules = loaded_after(code)
    assert not [m for m in HEAVY if m in modules]


def test_probe_is_stdlib_only_and_a_no_op_outside_a_run(tmp_path: Path) -> None:
    modules = loaded_after("import memdiag.probe as p\np.phase('x')\np.progress(1, 2)")
    assert not [m for m in (*HEAVY, "click") if m in modules]
    env = {k: v for k, v in os.environ.items() if k != "MEMDIAG_PROBE"}
    subprocess.run(
        [sys.executable, "-c", "from memdiag import probe; probe.phase('a'); probe.records(3)"],
        env=env,
        check=True,
        cwd=tmp_path,
    )
    assert list(tmp_path.iterdir()) == []


def test_probe_writes_json_lines_when_in_a_run(tmp_path: Path) -> None:
    path = tmp_path / "probe.jsonl"
    code = (
        "from memdiag import probe\n"
        "with probe.phase('fetch'):\n    probe.progress(5, 5)\nprobe.records(5)"
    )
    env = {**os.environ, "MEMDIAG_PROBE": str(path)}
    subprocess.run([sys.executable, "-c", code], env=env, check=True)
    events = [json.loads(line) for line in path.read_text().splitlines()]
    assert [e.get("phase", "-") for e in events] == ["fetch", "-", None, "-"]
    assert events[1]["done"] == 5 and events[3]["records"] == 5
