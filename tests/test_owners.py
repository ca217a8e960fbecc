"""Owners of the growth: the fixed holders never alarm, in-place growth is its own owner,
and the shares are computed from what the child found (hand-built)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

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


def leaking(
    tmp_path: Path, target: str, iterations: int
) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    """Run `memdiag leaks` on leak_targets.py's `target`, which leaks; return it and its report."""
    out = tmp_path / f"{target}.json"
    count = str(iterations)
    proc = memdiag("leaks", f"{LEAKS}:{target}", "--iterations", count, "--json", str(out))
    assert proc.returncode == 1, proc.stdout
    return proc, json.loads(out.read_text())


def test_a_buffer_growing_in_place_is_its_own_owner(tmp_path: Path) -> None:
    proc, report = leaking(tmp_path, "one_buffer", 6)
    owner = report["owners"][0]
    assert owner["expression"] == "leak_targets.BUFFER" and owner["in_place"], owner
    assert 0.9 * 2**20 < owner["retained_bytes_per_iteration"] < 1.3 * 2**20, owner
    assert owner["share"] > 0.9, owner
    assert "grows in place" in proc.stdout


def test_a_set_that_keeps_growing_is_credited_with_its_own_table(tmp_path: Path) -> None:
    _, report = leaking(tmp_path, "processed_keys", 8)
    owner = report["owners"][0]
    assert owner["expression"] == "leak_targets.SYNC.processed_records" and owner["type"] == "set"
    # 60,000 keys a call: their strings (~65 bytes each) and the set's table, which doubles
    # every few calls (16 bytes a slot at 40-60% load: 27-40 bytes a key on average).
    assert 20 * 60_000 <= owner["table_bytes_per_iteration"] <= 60 * 60_000, owner
    assert owner["share"] >= 0.9, (owner["share"], report["growth_bytes_per_iteration"])
    strings = owner["retained_bytes_per_iteration"] - owner["table_bytes_per_iteration"]
    assert 45 * 60_000 <= strings <= 90 * 60_000, owner


def test_of_two_caches_the_one_that_never_lets_go_is_the_owner(tmp_path: Path) -> None:
    # The bounded LRU holds every record of the last call and comes first everywhere; the
    # unbounded cache beside it holds the same records and all the older ones.
    proc, report = leaking(tmp_path, "two_caches", 7)
    first = report["owners"][0]
    assert first["expression"] == "leak_targets.Lookups.everything", report["owners"]
    assert first["share"] >= 0.9 and first["table_bytes_per_iteration"] > 0
    assert all(o["expression"] != "leak_targets.Lookups.recent" for o in report["owners"])
    chains = {t["name"]: t["chain"]["expression"] for t in report["types"] if t["chain"]}
    assert chains["dict"].startswith("leak_targets.Lookups.everything["), chains
    assert "Lookups.recent" not in proc.stdout


def test_a_listener_owner_names_where_it_grows_and_what_it_stores(tmp_path: Path) -> None:
    """The line to change for a listener leak is the `subscribe(...)` call: the owner names
    where its table grew (the append in `subscribe`, called from there) and where what it
    stores was made. Five calls: the fifth appends past the list's room for four."""
    lines = Path(TARGETS).read_text().splitlines()
    append = next(i for i, t in enumerate(lines, 1) if ".append(handler)" in t)
    subscribe = next(i for i, t in enumerate(lines, 1) if 'EVENT_BUS.subscribe("progress"' in t)
    out, md = tmp_path / "listener.json", tmp_path / "listener.md"
    proc = memdiag(
        "leaks", f"{TARGETS}:listener", "--iterations", "5", "--frames", "2",
        "--json", str(out), "--markdown", str(md),
    )  # fmt: skip
    assert proc.returncode == 1, proc.stdout + proc.stderr
    owner = json.loads(out.read_text())["owners"][0]
    assert owner["expression"] == "chain_targets.EVENT_BUS._handlers['progress']", owner
    assert [line for _, line in owner["table_site"]] == [subscribe, append], owner
    assert owner["stored_site"][-1][1] == subscribe, owner
    (grows,) = [line for line in md.read_text().splitlines() if "grows at" in line]
    assert grows.endswith(f"chain_targets.py:{append} ← tests/chain_targets.py:{subscribe}")
    assert "grows at" in proc.stdout, proc.stdout


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


def test_a_site_a_little_above_the_heaps_trend_is_new_objects() -> None:
    # A running process traced for one interval: its site holds 8% more than the heap's
    # trend per interval (the interval ran a little longer). Those are the interval's new
    # objects, not a buffer grown in place (`leaks --pid` said "?" and 0 objects).
    site = SiteStat([["service.py", 27]], 1_080_000, 4_000)
    growing = [_snap(i, 1_000_000 * i) for i in range(6)]
    growing.append(_snap(6, 6_000_000, frames=1, sites=[site]))
    leak = find_leaks(growing, LeakSettings()).sites[0]
    assert leak.bytes_per_iteration == 1_080_000 and leak.objects_per_iteration == 4_000


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
