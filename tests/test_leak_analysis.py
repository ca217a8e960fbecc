"""Leak detection, diffs and the snapshot model, on snapshots built by hand."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from memdiag.analysis.diff import compare_snapshots
from memdiag.analysis.leaks import LeakSettings, find_leaks, grows, trend
from memdiag.model import SiteStat, Snapshot, SnapshotDiff, TypeStat, load_snapshot
from memdiag.render.markdown import LeakMarkdownRenderer
from tests.conftest import MB

KB = 1024
SITE = [["/app/jobs.py", 40], ["/app/sync.py", 212]]


def snap(i: int, site_bytes: float, objects: int, rss: float, heap: float = 0) -> Snapshot:
    return Snapshot(
        label=f"iteration {i}",
        time_s=float(i),
        target="jobs.py:sync",
        rss_bytes=int(rss),
        heap_bytes=int(heap),
        tracemalloc_bytes=0,
        sites=[SiteStat(SITE, int(site_bytes), objects)],
        types=[TypeStat("str", 1000 + objects, 50_000 + int(site_bytes))],
    )


def series(sizes: list[float], rss: list[float] | None = None) -> list[Snapshot]:
    rss = rss or [50 * MB + s for s in sizes]
    return [
        snap(i, s, int(s // 1000), r, s) for i, (s, r) in enumerate(zip(sizes, rss, strict=True))
    ]


def test_steady_growth_is_a_leak_named_by_site_and_type() -> None:
    report = find_leaks(series([i * 200 * KB for i in range(8)]))
    assert report.found and report.native is None
    (site,) = report.sites
    assert site.site == "/app/sync.py:212"
    assert site.bytes_per_iteration == pytest.approx(200 * KB)
    assert site.grew == site.intervals == 5
    assert [t.name for t in report.types] == ["str"]


@pytest.mark.parametrize(
    "sizes",
    [
        [0, 300 * KB, 600 * KB, 620 * KB, 620 * KB, 620 * KB, 621 * KB, 620 * KB],  # warming
        [0, 200 * KB, 100 * KB, 300 * KB, 150 * KB, 320 * KB, 160 * KB, 330 * KB],  # sawtooth
        [i * 8 * KB for i in range(8)],  # grows, but below the threshold
        [5 * MB] * 8,  # flat
    ],
)
def test_noise_is_not_a_leak(sizes: list[float]) -> None:
    assert not find_leaks(series(sizes)).found


def test_one_object_that_grows_is_a_leak() -> None:
    # One buffer extended by 1 MB per call: one live block, one live object, ever.
    snaps = [
        Snapshot(
            label=f"iteration {i}",
            time_s=float(i),
            rss_bytes=50 * MB + i * MB,
            heap_bytes=i * MB,
            tracemalloc_bytes=0,
            sites=[SiteStat(SITE, i * MB, 1)],
            types=[TypeStat("bytearray", 1, i * MB + 57), TypeStat("str", 900, 60_000)],
        )
        for i in range(8)
    ]
    report = find_leaks(snaps)
    (site,) = report.sites
    assert site.bytes_per_iteration == pytest.approx(MB) and site.objects_per_iteration == 0
    (kind,) = report.types
    assert kind.name == "bytearray" and kind.bytes_per_iteration == pytest.approx(MB)
    assert report.native is None


def test_the_rule_on_one_series() -> None:
    rule = LeakSettings()
    assert grows(trend([i * 100 * KB for i in range(6)]), rule)
    assert not grows(trend([i * 60 * KB for i in range(6)]), rule)  # under 64 KB a step
    assert grows(trend([i * 60 * KB for i in range(6)]), rule, min_slope=50 * KB)
    assert not grows(trend([0, MB, 2 * MB]), rule)  # two steps: too few to tell
    assert not grows(trend([0, MB, MB, MB, 2 * MB, 2 * MB]), rule)  # 2 of 5 steps
    # x in seconds: the slope is per second.
    seconds = [0.0, 10.0, 20.0, 30.0, 40.0]
    assert trend([0, 10, 20, 30, 40], seconds).per_step == pytest.approx(1.0)


def test_one_flat_call_in_five_still_counts_as_nearly_every() -> None:
    sizes = [0, 1, 2, 3, 3, 4, 5, 6]
    report = find_leaks(series([s * 300 * KB for s in sizes]), LeakSettings(warmup=1))
    assert report.found and report.sites[0].grew == 5 and report.sites[0].intervals == 6


def test_rss_growing_without_the_heap_is_native_growth() -> None:
    rss = [60 * MB + i * 4 * MB for i in range(8)]
    report = find_leaks(series([100 * KB] * 8, rss))
    assert not report.sites and report.native is not None
    assert report.native.native_per_iteration == pytest.approx(4 * MB, rel=0.01)
    assert "--memray --native" in LeakMarkdownRenderer().report(report)


def test_markdown_lists_callers_only_when_there_are_some() -> None:
    report = find_leaks(series([i * 200 * KB for i in range(8)]))
    text = LeakMarkdownRenderer().report(report)
    assert text.count("called from:") == 1 and "- `/app/jobs.py:40`" in text
    report.sites[0].traceback = SITE[1:]  # one frame, the default: no callers
    text = LeakMarkdownRenderer().report(report)
    assert "called from" not in text and "/app/sync.py:212" in text


def untraced_then_traced(rss: list[float]) -> list[Snapshot]:
    """`memdiag leaks`'s series: untraced snapshots (no sites), then one after the traced call."""
    snaps = [
        Snapshot(f"iteration {i}", float(i), "jobs.py:sync", rss_bytes=int(r), heap_bytes=1 * MB)
        for i, r in enumerate(rss)
    ]
    snaps[-1].frames, snaps[-1].tracemalloc_bytes = 1, 2 * MB
    snaps[-1].sites = [SiteStat(SITE, 100 * KB, 10)]
    return snaps


def test_rss_left_by_the_traced_call_is_not_native_growth() -> None:
    # Flat RSS, then tracemalloc's tables for the traced call's peak stay in RSS after it.
    flat = [60 * MB + (i % 2) * 100 * KB for i in range(7)]
    report = find_leaks(untraced_then_traced([*flat[:-1], flat[-1] + 80 * MB]))
    assert report.native is None
    # A real native leak is still one without the traced call's snapshot.
    growing = [60 * MB + i * 4 * MB for i in range(7)]
    report = find_leaks(untraced_then_traced([*growing[:-1], growing[-1] + 80 * MB]))
    assert report.native is not None
    assert report.native.native_per_iteration == pytest.approx(4 * MB, rel=0.05)


def test_rss_following_the_heap_is_not_native_growth() -> None:
    sizes = [i * 4 * MB for i in range(8)]
    report = find_leaks(series(sizes))
    assert report.found and report.native is None


def test_trend_slope_and_growth_count() -> None:
    t = trend([0, 10, 20, 20, 40])
    assert t.per_step == pytest.approx(9.0) and t.grew == 3 and t.steps == 4


def test_compare_keeps_growth_largest_first() -> None:
    grown = [["/a.py", 1]]
    a = Snapshot(
        "a",
        0.0,
        rss_bytes=10 * MB,
        heap_bytes=MB,
        sites=[SiteStat(SITE, 100, 1)],
        types=[TypeStat("dict", 10, 1000), TypeStat("list", 5, 500)],
    )
    b = Snapshot(
        "b",
        2.0,
        rss_bytes=12 * MB,
        heap_bytes=2 * MB,
        sites=[SiteStat(SITE, 50, 1), SiteStat(grown, 4000, 40)],
        types=[TypeStat("dict", 30, 5000), TypeStat("list", 6, 900)],
    )
    diff = compare_snapshots(a, b)
    assert [s.key for s in diff.sites] == ["/a.py:1"]  # the shrunk site is left out
    assert diff.sites[0].size_diff_bytes == 4000 and diff.sites[0].count_diff == 40
    assert [t.name for t in diff.types] == ["dict", "list"]
    assert diff.rss_diff_bytes == 2 * MB and diff.heap_diff_bytes == MB
    assert compare_snapshots(a, b, min_growth_bytes=1000).types[0].name == "dict"
    assert len(compare_snapshots(a, b, min_growth_bytes=1000).types) == 1
    assert SnapshotDiff.from_dict(json.loads(json.dumps(diff.to_dict()))) == diff


def test_snapshot_round_trips_through_json(tmp_path: Path) -> None:
    from memdiag.model import write_json_atomic

    original = series([0, 100 * KB])[1]
    path = write_json_atomic(tmp_path / "s.json", original.to_dict())
    assert load_snapshot(path) == original
    assert json.loads(path.read_text())["kind"] == "snapshot"
