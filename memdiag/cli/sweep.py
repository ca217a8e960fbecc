"""memdiag sweep: measure every configuration of a grid and decide per memory budget.

\b
Every combination of the axes runs --repeat times, each in a fresh process; medians with
their min-max spread go in every table. Any parameter can be an axis: --param NAME=V1,V2
(one value is a fixed parameter). results.json is rewritten atomically after every run, so
an interrupted sweep continues with --resume. A run that errors, times out (--timeout) or
goes past --limit is recorded as such and the sweep goes on.

\b
For each --budget, the decision matrix names the configuration with the highest records/s
(shortest wall time when the target reports no records) whose median peak is at most
--headroom of the budget. Numeric input-size axes (records, items, ...) get a fit
peak = a + b·size and a verdict: constant (streams) or grows (accumulates).

\b
Writes into --out (default reports/<target name>): results.json, report.md, report.html,
peak.png, throughput.png, timelines.png. Exit code 0 when the sweep finished, 1 when no run
finished ok, 2 on bad input, 130 when interrupted (continue with --resume).

\b
Examples:
  memdiag sweep import --batch 10,25,50,100 --concurrency 1,2,4
  memdiag sweep import --param variant=accumulate,stream --param records=5000,20000,50000 \\
      --batch 50,200 --repeat 2 --predict records=220000
  memdiag sweep jobs/sync.py:run --batch 25,50 --budget 512MB,1GB --limit 1GB --timeout 300
  memdiag sweep --batch 10,50,100 -- node sync.js --batch {batch}
  memdiag sweep import --batch 10,25,50,100 --resume --jobs 2
  memdiag sweep import --batch 10,25,50,100 --cluster tcp://10.0.0.5:8786
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

from memdiag.cli.common import TargetCommand, external_command, positive, size_option
from memdiag.cli.decision import (
    decision_options,
    parse_budgets,
    parse_headroom,
    parse_predict,
    parse_reference,
)
from memdiag.errors import MemdiagError
from memdiag.model import Run, Sweep
from memdiag.targets import Target


@click.command("sweep", cls=TargetCommand, help=__doc__)
@click.argument("target", required=False)
@click.option("--batch", default=None, metavar="N,N,...", help="Batch sizes: the batch axis.")
@click.option("--concurrency", default=None, metavar="N,N,...", help="Concurrency levels: an axis.")
@click.option(
    "--param",
    "-p",
    "params",
    multiple=True,
    metavar="NAME=V1,V2",
    help="A parameter; two or more comma-separated values make it an axis (repeatable).",
)
@click.option("--repeat", type=int, default=3, show_default=True, help="Runs per config.")
@decision_options(defaults=True)
@click.option("--out", default=None, metavar="DIR", help="Report directory.")
@click.option("--resume", is_flag=True, help="Continue the sweep saved in --out.")
@click.option("--jobs", type=int, default=1, show_default=True, help="Runs side by side.")
@click.option(
    "--cluster",
    default=None,
    envvar="MEMDIAG_CLUSTER",
    metavar="ADDRESS",
    help="Run on a dask.distributed scheduler (tcp://HOST:8786) or on local:N worker "
    "processes; also MEMDIAG_CLUSTER. See docs/cluster.md.",
)
@click.option("--timeout", type=float, default=None, help="Stop each run after SECONDS.")
@click.option("--limit", default=None, metavar="SIZE", help="Enforce SIZE on every run.")
@click.option("--interval", type=float, default=0.1, show_default=True, help="Sampling (s).")
@click.option(
    "--size-axis",
    "size_axis",
    multiple=True,
    metavar="NAME",
    help="Treat parameter NAME as an input size (records, items, cycles... already are).",
)
@click.option("--quiet", "-q", is_flag=True, help="No progress bar; only the matrix.")
@click.pass_context
def command(ctx: click.Context, /, target: str | None, **options: Any) -> int:
    from memdiag.analysis.sweep import analyse_sweep
    from memdiag.measure.child import RunOptions
    from memdiag.measure.sweep import default_name, expand, open_runner, pending_runs
    from memdiag.render.progress import SweepProgress
    from memdiag.render.report import save_results, write_report
    from memdiag.render.terminal import TerminalRenderer
    from memdiag.targets import parse_target

    parsed = parse_target(target, external_command(ctx))
    sweep = _plan(parsed, options)
    out = Path(options["out"] or Path("reports") / default_name(parsed))
    sweep = _resume(sweep, out) if options["resume"] else sweep
    todo = pending_runs(expand(sweep.axes, sweep.base), sweep.runs, sweep.repeat)
    run_options = RunOptions(
        interval=positive("--interval", options["interval"]) or 0.1,
        timeout=sweep.timeout_s,
        limit_bytes=sweep.limit_bytes,
    )

    def save(run: Run) -> None:
        sweep.runs.append(run)
        save_results(analyse_sweep(sweep), out)

    try:
        with (
            open_runner(sweep.cluster, parsed) as execute,
            SweepProgress(len(todo), save, quiet=options["quiet"]) as progress,
        ):
            execute(parsed, todo, run_options, progress, jobs=sweep.jobs)
    except KeyboardInterrupt:
        raise MemdiagError(
            f"interrupted: {len(sweep.runs)} runs saved in {out / 'results.json'}; "
            "run the same command with --resume to continue",
            exit_code=130,
        ) from None
    final = analyse_sweep(sweep)
    files = write_report(final, out)
    TerminalRenderer().sweep(final, full=not options["quiet"])
    click.echo(f"report: {files.html}\nresults: {files.results}")
    return 0 if any(run.ok for run in final.runs) else 1


def _plan(target: Target, options: dict[str, Any]) -> Sweep:
    """Return the empty Sweep the options describe; every bad option is a MemdiagError."""
    from memdiag.analysis.matrix import match_reference
    from memdiag.analysis.scaling import size_axes
    from memdiag.measure.env import collect_env
    from memdiag.measure.sweep import build_axes

    axes, base = build_axes(options["params"], options["batch"], options["concurrency"])
    for name in ("repeat", "jobs"):
        if options[name] < 1:
            raise MemdiagError(f"--{name} must be at least 1, got {options[name]}")
    reference = parse_reference(options["reference"])
    if options["cluster"]:
        from memdiag.measure.cluster import parse_cluster

        parse_cluster(options["cluster"])  # a malformed address fails before any work
    return Sweep(
        target=target.text,
        axes=axes,
        base=base,
        repeat=options["repeat"],
        jobs=options["jobs"],
        timeout_s=positive("--timeout", options["timeout"]),
        limit_bytes=size_option(options["limit"]),
        budgets_bytes=parse_budgets(options["budget"]),
        headroom=parse_headroom(options["headroom"]),
        reference=match_reference(axes, reference) if reference else None,
        predict=parse_predict(options["predict"], size_axes(axes, options["size_axis"])),
        size_axes=list(options["size_axis"]),
        started_at=datetime.now(UTC).isoformat(timespec="seconds"),
        env=collect_env(),
        cluster=options["cluster"] or None,
    )


def _resume(plan: Sweep, out: Path) -> Sweep:
    """Return `plan` holding the runs already saved in `out`, which must be the same sweep."""
    from memdiag.model import load_sweep

    path = out / "results.json"
    if not path.exists():
        click.echo(f"nothing to resume in {out}; starting the sweep", err=True)
        return plan
    saved = load_sweep(path)
    for what, mine, theirs in (
        ("target", plan.target, saved.target),
        ("axes", plan.axes, saved.axes),
        ("fixed params", plan.base, saved.base),
    ):
        if mine != theirs:
            raise MemdiagError(
                f"--resume: {path} is a different sweep ({what} {theirs!r}, not {mine!r}); "
                "use another --out or drop --resume"
            )
    plan.runs = list(saved.runs)
    plan.started_at = saved.started_at or plan.started_at
    return plan
