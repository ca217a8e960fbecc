"""memdiag and its reference engines are two distributions: memdiag stays lean."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ENGINES = {"player-sync", "import", "migration", "record-sync", "parallel"}


def _project(path: Path) -> dict[str, object]:
    with path.open("rb") as fh:
        project: dict[str, object] = tomllib.load(fh)["project"]
    return project


def test_memdiag_itself_does_not_depend_on_sqlalchemy_nor_register_engines() -> None:
    project = _project(ROOT / "pyproject.toml")
    deps = " ".join(map(str, project["dependencies"])).lower()  # type: ignore[call-overload]
    assert "sqlalchemy" not in deps
    assert "memdiag.engines" not in project.get("entry-points", {})  # type: ignore[operator]


def test_engines_distribution_registers_the_five_engines_and_needs_sqlalchemy() -> None:
    project = _project(ROOT / "plugins" / "pyproject.toml")
    assert project["name"] == "memdiag-engines"
    deps = " ".join(map(str, project["dependencies"])).lower()  # type: ignore[call-overload]
    assert "sqlalchemy" in deps
    registered = project["entry-points"]["memdiag.engines"]  # type: ignore[index]
    assert set(registered) >= ENGINES


def _memdiag_without_engines(*args: str) -> subprocess.CompletedProcess[str]:
    """Run the real CLI with the entry-point group seen empty, as after `pip install memdiag`."""
    code = (
        "import sys, memdiag.engines as e; e._entry_points = dict; "
        "from memdiag.cli import main; sys.argv = ['memdiag', *sys.argv[1:]]; main()"
    )
    return subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=60
    )


def test_engines_command_says_how_to_get_the_reference_engines() -> None:
    done = _memdiag_without_engines("engines")
    assert done.returncode == 0, done.stderr
    assert "no engines installed" in done.stdout
    assert "pip install ./plugins" in done.stdout


def test_unknown_engine_without_any_installed_is_one_line_with_the_hint() -> None:
    done = _memdiag_without_engines("run", "import")
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "no engines installed" in lines[0] and "pip install ./plugins" in lines[0]
