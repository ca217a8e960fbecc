"""memdiag report: re-render any saved result: a sweep, a run, a monitor, a snapshot, a
snapshot diff, a leak report, a gate result, a pytest report or a baseline.

\b
Nothing is re-run. A sweep's results.json gets its whole report again (Markdown, HTML,
PNGs); with --budget, --headroom, --reference or --at the decision is recomputed from
the saved runs first, and the report with its own results.json goes to --out, or else to
the folder decision/ beside RESULTS. RESULTS itself is never changed. A run (`memdiag run
--json`) gets its summary, and its timeline with --plot. A monitor's samples.jsonl gets its
summary (recomputed from the samples, so a monitor that was killed renders too), and its
plot with --plot. A snapshot, a snapshot diff (`memdiag diff --json`) and a leak report
(`memdiag leaks --json`) are printed as their commands print them; a gate result (`memdiag
gate --json`), a pytest report and a baseline as Markdown. Exit code 2 when the file is
missing, corrupt, of an unknown kind, or from another memdiag version.

\b
Examples:
  memdiag report reports/import/results.json
  memdiag report reports/import/results.json --budget 256MB,4GB --headroom 70%
  memdiag report reports/import/results.json --out /tmp/review --quiet
  memdiag report reports/run.json --plot run.png
  memdiag report samples.jsonl --plot monitor.png
  memdiag report reports/leaks.json
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from memdiag.cli.decision_options import (
    decision_options,
    parse_budgets,
    parse_headroom,
    parse_predict,
    parse_reference,
)
from memdiag.errors import MemdiagError

# Where a recomputed decision goes when no --out is given: beside the source, never over it.
DECISION_DIR = "decision"


@click.command("report", help=__doc__)
@click.argument("results", metavar="RESULTS.json")
@decision_options(defaults=False)
@click.option(
    "--out",
    default=None,
    metavar="DIR",
    help="Where to write (default: beside RESULTS; a recomputed decision: decision/ beside it).",
)
@click.option("--quiet", "-q", is_flag=True, help="Print only the decision matrix.")
@click.option(
    "--plot",
    "plot_path",
    default=None,
    metavar="PATH",
    help="For a run or a monitor: write its plot as PNG.",
)
def command(
    results: str, out: str | None, quiet: bool, plot_path: str | None, **decision: Any
) -> int:
    kind = _kind(results)
    if kind == "monitor":
        return render_monitor_file(results, plot_path)
    if kind == "run":
        return _render_run(results, plot_path)
    if kind == "sweep":
        return _render_sweep(results, out, quiet, decision)
    return _RENDERERS[kind](results)


def _kind(path: str) -> str:
    """Return the kind of a saved result from its first line or its `kind` field."""
    try:
        with open(path) as handle:
            first = handle.readline()
    except OSError as exc:
        raise MemdiagError(f"{path}: {exc.strerror or exc}") from None
    if '"kind": "monitor"' in first or '"kind":"monitor"' in first:
        return "monitor"
    from memdiag.model import load_json

    return str(load_json(path, ("sweep", "run", *_RENDERERS))["kind"])


def _render_snapshot(path: str) -> int:
    from memdiag.model import load_snapshot
    from memdiag.render.terminal import SnapshotRenderer

    SnapshotRenderer().snapshot(load_snapshot(path))
    return 0


def _render_diff(path: str) -> int:
    from memdiag.model import SnapshotDiff
    from memdiag.model.files import load_model
    from memdiag.render.terminal import SnapshotRenderer

    SnapshotRenderer().diff(load_model(path, "snapshot-diff", SnapshotDiff.from_dict))
    return 0


def _render_leaks(path: str) -> int:
    from memdiag.model import load_json, load_leak_report
    from memdiag.render.terminal import LeakTerminalRenderer

    report = load_leak_report(path)
    extra = load_json(path, ("leak-report",))
    if extra.get("partial"):
        click.echo(f"PARTIAL: {report.snapshots} snapshots, stopped by Ctrl-C")
    LeakTerminalRenderer().report(report, searched=extra.get("chain_search"))
    return 0


def _render_gate(path: str) -> int:
    from memdiag.model import load_gate_result
    from memdiag.render.markdown import MarkdownRenderer

    click.echo(MarkdownRenderer().gate(load_gate_result(path)))
    return 0


def _render_entries(path: str) -> int:
    from memdiag.cli.common import load_comparable
    from memdiag.model import load_json
    from memdiag.render.markdown import MarkdownRenderer

    kind = load_json(path, ("pytest", "baseline"))["kind"]
    title = "Baseline" if kind == "baseline" else "pytest memory report"
    click.echo(MarkdownRenderer().entries(title, load_comparable(path)))
    return 0


# Every other saved kind: how `memdiag report` prints it.
_RENDERERS: dict[str, Callable[[str], int]] = {
    "snapshot": _render_snapshot,
    "snapshot-diff": _render_diff,
    "leak-report": _render_leaks,
    "gate": _render_gate,
    "pytest": _render_entries,
    "baseline": _render_entries,
}


def render_monitor_file(path: str, plot_path: str | None = None) -> int:
    """Print the summary of the monitor saved in `path`; write its PNG to `plot_path`.

    The summary is computed again from the samples, so a file cut short by a killed monitor
    renders too. Returns the exit code: 0 (a bad file raises MemdiagError, exit 2).
    """
    from memdiag.analysis.monitor import summarize_samples
    from memdiag.measure.monitor.file import read_samples_file
    from memdiag.render.monitor_view import event_lines, summary_lines

    record = read_samples_file(path)
    header, samples = record.header, record.samples
    thresholds = (float(header.get("warn", 75)), float(header.get("critical", 85)))
    limit = int(header.get("limit_bytes") or 0)
    if limit <= 0:
        raise MemdiagError(f"{path}: the monitor header has no limit_bytes")
    summary = summarize_samples(samples, thresholds, limit)
    saved = record.summary or {}
    ended = str(saved.get("ended", "unknown (no summary line: the monitor was killed)"))
    target = str(header.get("target", "?"))
    for line in summary_lines(summary, target, ended, saved.get("exit_code")):
        click.echo(line)
    for line in event_lines(record.events):
        click.echo(line)
    if plot_path and summary is not None:
        from memdiag.render.png import plot_monitor

        uss = [(s.t_s, float(s.uss_bytes)) for s in samples if s.uss_bytes is not None]
        times = [s.t_s for s in samples]
        plot_monitor(times, [float(s.rss_bytes) for s in samples], uss, summary, target, plot_path)
        click.echo(f"plot: {plot_path}")
    return 0


def _render_run(path: str, plot_path: str | None) -> int:
    from memdiag.analysis.phases import phase_peaks
    from memdiag.model import load_run
    from memdiag.render.terminal import TerminalRenderer

    run = load_run(path)
    TerminalRenderer().run(run, phase_peaks(run))
    if plot_path:
        from memdiag.render.png import PngRenderer

        PngRenderer().timeline(run, plot_path)
        click.echo(f"plot: {plot_path}")
    return 0


def _render_sweep(results: str, out: str | None, quiet: bool, decision: dict[str, Any]) -> int:
    from memdiag.model import load_sweep
    from memdiag.render.report import write_report
    from memdiag.render.terminal import TerminalRenderer

    sweep = load_sweep(results)
    changed = _apply_decision(sweep, decision)
    if changed:
        from memdiag.analysis.sweep import analyse_sweep

        sweep = analyse_sweep(sweep)
    folder = _report_folder(results, out, changed)
    moved = folder.resolve() != Path(results).resolve().parent
    files = write_report(sweep, folder, results=changed or moved)
    TerminalRenderer().sweep(sweep, full=not quiet)
    click.echo(f"report: {files.html}")
    return 0


def _report_folder(results: str, out: str | None, changed: bool) -> Path:
    """Return where the report goes: --out, else beside RESULTS, or with a changed decision
    the folder `decision/` beside it, so that RESULTS itself is never rewritten."""
    beside = Path(results).parent
    if out is None:
        return beside / DECISION_DIR if changed else beside
    if changed and (Path(out) / "results.json").resolve() == Path(results).resolve():
        raise MemdiagError(f"--out {out}: would rewrite {results} itself; give another directory")
    return Path(out)


def _apply_decision(sweep: Any, decision: dict[str, Any]) -> bool:
    """Set the decision settings given on the command line; return True when any was."""
    from memdiag.analysis.matrix import match_reference
    from memdiag.analysis.scaling import size_axes

    if decision["budget"] is not None:
        sweep.budgets_bytes = parse_budgets(decision["budget"])
    if decision["headroom"] is not None:
        sweep.headroom = parse_headroom(decision["headroom"])
    reference = parse_reference(decision["reference"])
    if reference is not None:
        sweep.reference = match_reference(sweep.axes, reference)
    if decision["predict"]:
        sweep.predict = parse_predict(decision["predict"], size_axes(sweep.axes, sweep.size_axes))
    return any(v not in (None, ()) for v in decision.values())
