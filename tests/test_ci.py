"""CI cannot pass without its services: `.ci/run`, `.ci/postgres.sh`, `.ci/pythons.sh` and the
markers that need them.

The scripts run for real, with a PATH of their own: the ordinary tools, a `make` that only
records that it ran, an `apt-get` that fails (as without network), and no PostgreSQL tools.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

ROOT = Path(__file__).resolve().parents[1]
TOOLS = ["bash", "dirname", "id", "timeout", "cat", "ls", "sort", "tail", "awk", "grep", "tee"]
TOOLS += ["seq", "sleep", "env", "touch", "mktemp", "rm", "head"]


def sandbox(
    tmp_path: Path, dot: bool, node: bool = True, gdb: bool = True, cc: bool = True
) -> Path:
    """Return a bin directory: real tools, a recording `make`, a failing `apt-get`, and
    stand-ins for `dot`, `node`, `npm`, `gdb` and `cc` when asked."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in TOOLS:
        found = shutil.which(tool)
        assert found, tool
        (bin_dir / tool).symlink_to(found)
    fakes = {
        "make": f'#!/bin/sh\necho "$@" >> "{tmp_path}/make-ran"\n',
        "apt-get": "#!/bin/sh\nexit 100\n",
        "sudo": "#!/bin/sh\nexit 1\n",
    }
    if dot:
        fakes["dot"] = "#!/bin/sh\nexit 0\n"
    if node:
        fakes["node"] = fakes["npm"] = "#!/bin/sh\nexit 0\n"
    if gdb:
        fakes["gdb"] = "#!/bin/sh\nexit 0\n"
    if cc:
        fakes["cc"] = "#!/bin/sh\nexit 0\n"
    for name, text in fakes.items():
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    return bin_dir


def run(script: str, bin_dir: Path, ci: bool) -> subprocess.CompletedProcess[str]:
    env = {"PATH": str(bin_dir), "HOME": str(bin_dir.parent)}
    if ci:
        env["CI"] = "true"
    return subprocess.run(
        ["bash", str(ROOT / script)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        executable=shutil.which("bash"),
    )


def test_postgres_script_fails_in_ci_when_it_cannot_start_a_server(tmp_path: Path) -> None:
    bin_dir = sandbox(tmp_path, dot=True)
    proc = run(".ci/postgres.sh", bin_dir, ci=True)
    assert proc.returncode == 1 and proc.stdout == "", proc.stderr
    assert "CI=true" in proc.stderr
    outside = run(".ci/postgres.sh", bin_dir, ci=False)
    assert outside.returncode == 0 and outside.stdout == "", outside.stderr


def test_ci_run_fails_without_postgresql(tmp_path: Path) -> None:
    bin_dir = sandbox(tmp_path, dot=True)
    proc = run(".ci/run", bin_dir, ci=True)
    assert proc.returncode == 1, proc.stderr
    assert ".ci/run: PostgreSQL could not be started" in proc.stderr
    assert not (tmp_path / "make-ran").exists()  # the tests never ran, so never skipped


@pytest.mark.parametrize(
    ("missing", "message"),
    [
        ({"dot": False}, "graphviz (dot) could not be installed"),
        ({"node": False}, "node and npm could not be installed"),
        ({"gdb": False}, "gdb could not be installed"),
        ({"cc": False}, "a C compiler (gcc) could not be installed"),
    ],
    ids=["graphviz", "node", "gdb", "c-compiler"],
)
def test_ci_run_fails_without_a_tool_it_needs(
    tmp_path: Path, missing: dict[str, bool], message: str
) -> None:
    bin_dir = sandbox(tmp_path, **{"dot": True, **missing})
    proc = run(".ci/run", bin_dir, ci=True)
    assert proc.returncode == 1, proc.stderr
    assert f".ci/run: {message}" in proc.stderr
    assert not (tmp_path / "make-ran").exists()


def test_outside_ci_missing_services_only_skip(tmp_path: Path) -> None:
    bin_dir = sandbox(tmp_path, dot=False, node=False)
    proc = run(".ci/run", bin_dir, ci=False)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "make-ran").read_text().split() == ["test", "guard"]


MARKED_TEST = """
import pytest

@pytest.mark.{marker}
def test_needs_it():
    pass
"""


# Under CI the test errors in its setup: reported, and the run's exit code is not 0.
@pytest.mark.parametrize(
    ("marker", "variable"),
    [("postgres", "MEMDIAG_TEST_PG_URL"), ("pythons", "MEMDIAG_TEST_PYTHONS")],
)
@pytest.mark.parametrize(("ci", "outcome"), [("true", "errors"), ("", "skipped")])
def test_a_marker_fails_in_ci_and_skips_elsewhere(
    pytester: pytest.Pytester,
    monkeypatch: pytest.MonkeyPatch,
    marker: str,
    variable: str,
    ci: str,
    outcome: str,
) -> None:
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    monkeypatch.setenv("CI", ci)
    monkeypatch.delenv(variable, raising=False)
    pytester.makeconftest("from tests.conftest import pytest_runtest_setup  # noqa: F401\n")
    pytester.makeini(f"[pytest]\nmarkers =\n    {marker}: needs it\n")
    pytester.makepyfile(test_marked=MARKED_TEST.format(marker=marker))
    result = pytester.runpytest_subprocess("-rs")
    result.assert_outcomes(**{outcome: 1})
    assert (result.ret == pytest.ExitCode.OK) == (outcome == "skipped")
    if outcome == "errors":
        result.stdout.fnmatch_lines([f"*{variable} is not set under CI=true*"])


def test_pythons_script_fails_without_patchelf(tmp_path: Path) -> None:
    bin_dir = sandbox(tmp_path, dot=True)
    proc = run(".ci/pythons.sh", bin_dir, ci=True)
    assert proc.returncode == 1 and proc.stdout == "", proc.stdout + proc.stderr
    assert "pythons.sh: patchelf is missing" in proc.stderr
