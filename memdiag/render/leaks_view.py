"""The leak report's words and tables as display strings, formatted once for the terminal
(render/terminal.py) and Markdown (render/markdown.py)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from memdiag.model import LeakReport, NativeGrowth
from memdiag.render.snapshot_view import MACHINERY, short_path, site_text
from memdiag.render.tables import params_text
from memdiag.units import format_size

SITE_COLUMNS = ["site", "type", "per iteration", "objects/iter", "grew in", "live now"]
TYPE_COLUMNS = ["type", "objects/iter", "per iteration", "grew in", "live objects", "allocated at"]
OWNER_COLUMNS = ["owner", "type", "per iteration", "share", "each iteration adds"]


@dataclass
class LeakView:
    """The report's words and tables, formatted once for every renderer."""

    headline: str
    summary: list[tuple[str, str]]
    site_rows: list[list[str]]
    site_details: list[list[str]]
    type_rows: list[list[str]]
    chains: list[list[str]]
    native: list[str]
    owners_headline: str | None = None
    owner_rows: list[list[str]] | None = None
    owner_details: list[list[str]] | None = None


# The stages of `LeakReport.timings` in the order they run; indented ones are part of the
# stage above them.
TIMING_STAGES = [
    ("calls", "untraced calls"),
    ("traced_call", "the traced call"),
    ("snapshot_pauses", "snapshot pauses (collect, fork)"),
    ("snapshot_waits", "  of which waiting for a copy"),
    ("snapshot_copies", "snapshot copies (beside the calls)"),
    ("new_ids", "new objects' ids"),
    ("request_wait", "waiting for the last copy and memdiag's request"),
    ("request", "  of which memdiag reading snapshots"),
    ("evidence", "evidence (forked copy)"),
    ("evidence_newness", "  newness"),
    ("evidence_samples", "  samples of sites and types"),
    ("evidence_chains", "  reference chains"),
    ("evidence_owners", "  owners"),
    ("child", "the job's process, in all"),
    ("analysis", "memdiag's analysis"),
    ("graphs", "the chains' graphs (graphviz)"),
    ("report", "the report"),
]
TIMING_COLUMNS = ["stage", "seconds", "of the job's process"]


def timing_rows(timings: dict[str, float]) -> list[list[str]]:
    """Return the rows of the timings table: stage, seconds, share of the child's time."""
    whole = timings.get("child") or 0.0
    rows = []
    for key, label in TIMING_STAGES:
        if key not in timings:
            continue
        seconds = float(timings[key])
        inside = key not in ("child", "analysis", "graphs", "report")
        share = f"{seconds / whole:.0%}" if whole and inside else ""
        rows.append([label, f"{seconds:.2f}", share])
    return rows


def owners_headline(report: LeakReport) -> str | None:
    """Return "1 owner holds 96% of the growth: EXPR" for the owners found, None without."""
    if not report.owners:
        return None
    share = sum(o.share for o in report.owners)
    count = len(report.owners)
    verb = "owner holds" if count == 1 else "owners hold"
    names = ", ".join(o.expression for o in report.owners[:3]) + (", ..." if count > 3 else "")
    return f"{count} {verb} {share:.0%} of the growth: {names}"


def owner_table(report: LeakReport) -> tuple[list[list[str]], list[list[str]]]:
    """Return the owners' rows and, per owner, the sites and types it holds."""
    rows, details = [], []
    for owner in report.owners:
        adds = " → ".join(f"{step['count']:,} {step['type']}" for step in owner.path)
        if owner.in_place:
            adds = "grows in place"
        rows.append(
            [
                owner.expression,
                owner.type,
                format_size(owner.retained_bytes_per_iteration) + ("+" if owner.truncated else ""),
                f"{owner.share:.0%}",
                adds or "-",
            ]
        )
        held = []
        for group in owner.groups:
            if ":" in group:
                held.append(f"site {site_text([list(group.rsplit(':', 1))])}")
            else:
                held.append(f"type {group}")
        largest = ", ".join(
            f"{t['count']:,} {t['type']} {format_size(t['size_bytes'])}"
            for t in owner.largest_types
        )
        lines = [f"holds {', '.join(held)}"] if held else []
        if owner.table_site:
            lines.append(f"grows at {_callers(owner.table_site)}")
        if owner.stored_site and owner.stored_site != owner.table_site:
            lines.append(f"stores what was made at {_callers(owner.stored_site)}")
        lines += [f"largest: {largest}"] if largest else []
        if owner.sample:
            lines.append(f"added, e.g.: {owner.sample}")
        if owner.closures:
            lines.append(f"closures: {', '.join(owner.closures)}")
        details.append(lines)
    return rows, details


def _callers(traceback: list[list[Any]]) -> str:
    """Return "file:line ← caller ← ..." for a traceback (oldest frame first), memdiag's own
    frames left out."""
    calls = [f"{short_path(str(f))}:{line}" for f, line in reversed(traceback)]
    return " ← ".join(c for c in calls if not c.startswith(MACHINERY)) or site_text(traceback)


def chain_lines(chain: dict[str, Any] | None, searched: str | None = None) -> list[str]:
    """Return a reference chain as lines: root kind and expression, then one hop per line,
    then which walk found it. With no chain: what was searched, when that is known."""
    if not chain:
        if searched:
            return [f"no chain to a root found; searched: {searched}"]
        return ["no chain from a module global found (held from a frame or a C structure?)"]
    lines = [f"held by {chain['root']}: {chain['expression']}"]
    if chain.get("where"):
        lines.append(f"  ({chain['where']})")
    for hop in chain["hops"][1:]:
        items = f", {hop['items']:,} items" if hop.get("items") is not None else ""
        if hop["type"] in ("str", "bytes"):
            items = ""  # a string's length is not what holds memory here
        note = f", closure variable {hop['closure variable']}" if "closure variable" in hop else ""
        lines.append(f"  {hop['via']}  ({hop['type']}{items}{note})")
    if chain.get("found_by"):
        lines.append(f"found by: {chain['found_by']}")
    if chain.get("png"):
        lines.append(f"graph: {chain['png']}")
    return lines


def native_lines(native: NativeGrowth | None, report: LeakReport) -> list[str]:
    if native is None:
        return []
    unit = report.unit
    if report.heap_first_bytes is None:
        return [
            f"process RSS grows {format_size(native.rss_per_iteration)} per {unit} "
            f"(in {native.grew} of {native.intervals} {unit}s); no Python view of an external "
            "command: look inside it with its own tools (heap snapshots, valgrind, heaptrack)"
        ]
    if report.heap_basis == "v8":
        return [
            f"native growth: between the snapshots the process gained "
            f"{format_size(native.native_per_iteration)} of RSS per {unit} beyond what V8 took "
            f"(heap and external memory: {format_size(native.heap_per_iteration)}): worker "
            "threads' own heaps, a native addon.",
            "look further: the process's worker threads and addons (each worker's heap is its "
            "own, outside these snapshots)",
        ]
    return [
        f"native growth: RSS grows {format_size(native.rss_per_iteration)} per {unit}, the "
        f"Python heap {format_size(native.heap_per_iteration)}: "
        f"{format_size(native.native_per_iteration)} per {unit} outside Python objects "
        "(a C extension, ctypes, a native library).",
        f"look further: memdiag run {report.target} --memray --native, then "
        "python -m memray flamegraph on the capture",
    ]


def leak_view(report: LeakReport, frames: int = 4, searched: str | None = None) -> LeakView:
    """Return the formatted view of `report`; `searched` says what the chain search covered."""
    unit = report.unit
    if report.error:
        headline = f"the target failed: {report.error}"
        if report.found:
            headline += f"; LEAKS FOUND in the {unit}s before it"
    elif report.found:
        headline = "LEAKS FOUND"
    else:
        headline = f"no leaks: nothing grew in nearly every {unit} above the threshold"
    params = params_text(report.params)
    heap = (
        f"{format_size(report.heap_first_bytes)} → {format_size(report.heap_last_bytes)}"
        if report.heap_first_bytes is not None
        else "-"
    )
    summary = [
        ("target", f"{report.target}  {params}" + (f"  (pid {report.pid})" if report.pid else "")),
        ("snapshots", f"{report.snapshots} ({report.warmup} left out as warm-up)"),
        ("RSS", f"{format_size(report.rss_first_bytes)} → {format_size(report.rss_last_bytes)}"),
        ("V8 heap" if report.heap_basis == "v8" else "Python heap", heap),
    ]
    if report.traced_share is not None:
        summary.append(
            (
                "sites",
                f"the last call was traced in slices: {report.traced_share:.0%} of its small "
                "allocations traced, sizes and counts scaled up from them",
            )
        )
    if report.traced_whole is not None:
        summary.append(("sites", f"the last call was traced whole: {report.traced_whole}"))
    summary += [("note", note) for note in report.notes]
    site_rows, site_details, chains = [], [], []
    for s in report.sites:
        site_rows.append(
            [
                site_text(s.traceback),
                s.type or "?",
                format_size(s.bytes_per_iteration),
                f"{s.objects_per_iteration:,.1f}",
                "traced call" if s.intervals == 1 else f"{s.grew}/{s.intervals}",
                format_size(s.size_bytes),
            ]
        )
        calls = [f"{short_path(str(f))}:{line}" for f, line in reversed(s.traceback[-frames:])]
        calls = [c for c in calls if not c.startswith(MACHINERY)]
        site_details.append(calls)
    type_rows = []
    for t in report.types:
        type_rows.append(
            [
                t.name,
                f"{t.objects_per_iteration:,.1f}",
                format_size(t.bytes_per_iteration),
                f"{t.grew}/{t.intervals}",
                f"{t.count:,}",
                site_text([list(t.site.rsplit(":", 1))]) if t.site else "-",
            ]
        )
        if report.heap_basis != "v8":  # a V8 constructor's objects: see the owners
            chains.append([f"{t.name}:", *chain_lines(t.chain, searched)])
    owner_rows, owner_details = owner_table(report)
    return LeakView(
        headline,
        summary,
        site_rows,
        site_details,
        type_rows,
        chains,
        native_lines(report.native, report),
        owners_headline(report),
        owner_rows,
        owner_details,
    )
