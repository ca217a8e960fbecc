"""What grew between two snapshots: allocation sites and object types, largest growth first.

The shape is tracemalloc's `Snapshot.compare_to`: a site or type present in only one
snapshot counts as zero in the other. Only growth is kept, and only growth of at least
`min_growth_bytes`: `memdiag diff` answers "what grew", and shrinking is not a leak.
"""

from __future__ import annotations

from memdiag.model import SiteDiff, SiteStat, Snapshot, SnapshotDiff, TypeDiff, TypeStat


def _diff_or_none(a: int | None, b: int | None) -> int | None:
    return None if a is None or b is None else b - a


def site_diffs(before: list[SiteStat], after: list[SiteStat], min_growth: int) -> list[SiteDiff]:
    """Return the sites whose live size grew by at least `min_growth` bytes, largest first."""
    old = {s.key: s for s in before}
    grown = []
    for stat in after:
        prev = old.get(stat.key)
        size_diff = stat.size_bytes - (prev.size_bytes if prev else 0)
        if size_diff > 0 and size_diff >= min_growth:
            count_diff = stat.count - (prev.count if prev else 0)
            grown.append(
                SiteDiff(stat.traceback, stat.size_bytes, size_diff, stat.count, count_diff)
            )
    return sorted(grown, key=lambda d: (-d.size_diff_bytes, d.key))


def type_diffs(before: list[TypeStat], after: list[TypeStat], min_growth: int) -> list[TypeDiff]:
    """Return the types whose total shallow size grew by at least `min_growth`, largest first.

    A type whose count grew but whose size did not (many small objects replacing few
    large ones) is kept too when `min_growth` is 0.
    """
    old = {t.name: t for t in before}
    grown = []
    for stat in after:
        prev = old.get(stat.name)
        size_diff = stat.size_bytes - (prev.size_bytes if prev else 0)
        count_diff = stat.count - (prev.count if prev else 0)
        if (size_diff > 0 or count_diff > 0) and size_diff >= min_growth:
            grown.append(TypeDiff(stat.name, stat.count, count_diff, stat.size_bytes, size_diff))
    return sorted(grown, key=lambda d: (-d.size_diff_bytes, -d.count_diff, d.name))


def compare_snapshots(
    before: Snapshot, after: Snapshot, min_growth_bytes: int = 0, top: int | None = None
) -> SnapshotDiff:
    """Return what grew from `before` to `after` (sizes in bytes); at most `top` of each."""
    sites = site_diffs(before.sites, after.sites, min_growth_bytes)
    types = type_diffs(before.types, after.types, min_growth_bytes)
    return SnapshotDiff(
        before=before.label,
        after=after.label,
        elapsed_s=round(after.time_s - before.time_s, 3),
        rss_diff_bytes=after.rss_bytes - before.rss_bytes,
        uss_diff_bytes=_diff_or_none(before.uss_bytes, after.uss_bytes),
        heap_diff_bytes=_diff_or_none(before.heap_bytes, after.heap_bytes),
        sites=sites[:top] if top else sites,
        types=types[:top] if top else types,
    )
