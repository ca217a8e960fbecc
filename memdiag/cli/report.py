"""memdiag report: re-render a saved sweep's report from its results.json.

\b
Nothing is re-run. Without options the saved findings are rendered as they are; with
--budget, --headroom, --reference or --predict the decision is recomputed from the saved
runs first (results.json in --out is updated to match). Exit code 2 when the file is missing,
corrupt, not a sweep, or from another memdiag version.

\b
Examples:
  memdiag report reports/import/results.json
  memdiag report reports/import/results.json --budget 256MB,4GB --headroom 70%
  memdiag report reports/import/results.json --out /tmp/review --quiet
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from memdiag.cli.decision import (
    decision_options,
    parse_budgets,
    parse_headroom,
    parse_predict,
    parse_reference,
)


@click.command("report", help=__doc__)
@click.argument("results", metavar="RESULTS.json")
@decision_options(defaults=False)
@click.option("--out", default=None, metavar="DIR", help="Where to write (default: beside it).")
@click.option("--quiet", "-q", is_flag=True, help="Print only the decision matrix.")
def command(results: str, out: str | None, quiet: bool, **decision: Any) -> int:
    from memdiag.model import load_sweep
    from memdiag.render.report import write_report
    from memdiag.render.terminal import TerminalRenderer

    sweep = load_sweep(results)
    changed = _apply_decision(sweep, decision)
    if changed:
        from memdiag.analysis.sweep import analyse_sweep

        sweep = analyse_sweep(sweep)
    folder = Path(out) if out else Path(results).parent
    moved = folder.resolve() != Path(results).resolve().parent
    files = write_report(sweep, folder, results=changed or moved)
    TerminalRenderer().sweep(sweep, full=not quiet)
    click.echo(f"report: {files.html}")
    return 0


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
