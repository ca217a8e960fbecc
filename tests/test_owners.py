"""Owners of the growth: the fixed holders never alarm, in-place growth is its own owner,
and the shares are computed from what the child found (hand-built)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from memdiag.analysis.leaks import LeakSettings, find_leaks, owners, traced_sites, trend
from memdiag.model import Snapshot, TypeLeak
from memdiag.model.snapshot import SiteStat
from tests.conftest import memdiag

TARGETS = str(Path(__file__).with_name("chain_targets.py"))
LEAKS = str(Path(__file__).with_name("leak_targets.py"))
FIXED = [
    "listener_fixed",
    "closure_fixed",
    "handlers_fixed",
    "cached_fixed",
    "exit_hooks_fixed",
    "finalizers_fixed",
    "signals_fixed",
]


@pytest.mark.slow
@pytest.mark.parametrize("function", FIXED)
def test_fixed_holders_report_no_leak_in_five_runs(tmp_path: Path, function: str) -> None:
    for run in range(5):
        out = tmp_path / f"{run}.json"
        proc = memdiag("leaks", f"{TARGETS}:{function}", "--iterations", "6", "--json", str(out))
        report = json.loads(out.read_text())
        assert proc.returncode == 0, (run, proc.stdout)
        assert not report["found"] and not report["owners"], (run, proc.stdout)
        assert "no leaks" in proc.stdout


def test_a_buffer_growing_in_place_is_its_own_owner(tmp_path: Path) -> None:
    out = tmp_path / "buffer.json"
    proc = memdiag("leaks", f"{LEAKS}:one_buffer", "--iterations", "6", "--json", str(out))
    report = json.loads(out.read_text())
    assert proc.returncode == 1, proc.stdout
    owner = report["owners"][0]
    assert owner["expression"] == "leak_targets.BUFFER" and owner["in_place"], owner
    assert 0.9 * 2**20 < owner["retained_bytes_per_iteration"] < 1.3 * 2**20, owner
    assert owner["share"] > 0.9, owner
    assert "grows in place" in proc.stdout


def _owner(expression: str, retained: int, groups: list[str], in_place: bool = False) -> dict:
    return {
        "expression": expression,
        "root": "module global",
        "type": "list",
        "retained_bytes": retained,
        "retained_objects": retained // 100,
        "groups": groups,
        "path": [{"type": "str", "count": retained // 100}],
        "largest_types": [],
        "in_place": in_place,
        "truncated": False,
    }


def test_owners_share_the_heap_growth_largest_first() -> None:
    types = [TypeLeak("bytearray", 0.0, 1_000_000.0, 1, 5_000_000, 4, 4)]
    found = [
        _owner("jobs.SMALL", 100_000, ["str"]),
        _owner("jobs.BUFFER", 0, ["bytearray"], in_place=True),
        _owner("jobs.BIG", 800_000, ["jobs.py:3"]),
    ]
    result, growth = owners(found, 2_000_000.0, types)
    assert growth == 2_000_000.0
    assert [o.expression for o in result] == ["jobs.BUFFER", "jobs.BIG", "jobs.SMALL"]
    # In place: its type's growth per call from the series, not what it retains (nothing).
    assert result[0].retained_bytes_per_iteration == 1_000_000.0
    assert [o.share for o in result] == [0.5, 0.4, 0.05]
    # The heap's slope under what the owners retain (noise): shares never pass 100%.
    result, growth = owners(found[2:], 400_000.0, [])
    assert growth == 800_000.0 and result[0].share == 1.0


def _snap(i: int, heap: int, frames: int = 0, sites: list[SiteStat] | None = None) -> Snapshot:
    return Snapshot(
        label=f"iteration {i}",
        time_s=float(i),
        rss_bytes=50_000_000 + heap,
        heap_bytes=heap,
        heap_basis="objects",
        frames=frames,
        sites=sites or [],
    )


def test_sites_of_the_traced_call_only_when_the_heap_grows() -> None:
    site = SiteStat([["jobs.py", 3]], 300_000, 1000)
    buffer = SiteStat([["jobs.py", 9]], 6_000_000, 1)  # reallocated whole by the call
    small = SiteStat([["jobs.py", 5]], 1_000, 10)
    growing = [_snap(i, 1_000_000 * i) for i in range(6)]
    growing.append(_snap(6, 6_000_000, frames=1, sites=[site, buffer, small]))
    report = find_leaks(growing, LeakSettings())
    by_site = {s.site: s for s in report.sites}
    assert set(by_site) == {"jobs.py:3", "jobs.py:9"}  # under 64 KB: not a leak
    assert by_site["jobs.py:3"].bytes_per_iteration == 300_000
    assert by_site["jobs.py:3"].objects_per_iteration == 1000
    # Never more than the heap grew per call; no new object.
    assert by_site["jobs.py:9"].bytes_per_iteration == pytest.approx(1_000_000, rel=0.01)
    assert by_site["jobs.py:9"].objects_per_iteration == 0
    flat = [_snap(i, 5_000_000) for i in range(6)]
    flat.append(_snap(6, 5_000_000, frames=1, sites=[site]))
    assert find_leaks(flat, LeakSettings()).sites == []  # a warm cache, nothing grows
    assert traced_sites(flat[-1], LeakSettings(), trend([0, 0]))[0].bytes_per_iteration == 300_000
