"""memdiag sweep: measure every configuration of a grid and decide per memory budget.

\b
Every combination of the axes runs --repeat times, each in a fresh process; medians with
their min-max spread go in every table. Any parameter can be an axis: --param NAME=V1,V2
(one value is a fixed parameter). results.json is rewritten atomically after every run, so
an interrupted sweep continues with --resume. A run that errors, times out (--timeout) or
goes past --limit is recorded as such and the sweep goes on.

\b
For each --budget, the decision matrix names the configuration with the highest records/s
(shortest wall time when the target reports no records) whose worst case is at most
--headroom of the budget: the highest repeat, or at an --at size beyond those measured,
the upper end of the predicted peak's interval. Speed differences inside the noise are
ties, won by the lower peak. Numeric input-size axes (records, items, ...) get a fit
peak = a + b·size, a verdict (constant or grows), and per budget the largest input that fits.

\b
From 4 sizes, each configuration's memory is fitted with a line, n·log n, a power law, a
curve that levels off and a constant, and the model that best predicts the sizes it did
not see is chosen; time at --at is predicted from its own fit. --sizes auto (with --at)
measures further sizes itself, doubling toward --at under --limit = the largest budget,
until the prediction there is settled or the next size would not fit.

\b
--batch auto (or --param NAME=auto[:START], up to --max NAME=VALUE) searches, per budget,
the largest value that fits, in runs under a limit of headroom × budget: doubling, then
bisecting where the fit points. --confirm runs each decision once at the decision size
under --limit = the budget, and falls back to the next candidate when it fails.

\b
Writes into --out (default reports/<target name>): results.json, report.md, report.html,
capacity.png (with a size axis), peak.png, throughput.png, timelines.png. Exit code 0 when
the sweep finished, 1 when no run finished ok, 2 on bad input, 130 when interrupted
(continue with --resume).

\b
Examples:
  memdiag sweep import --batch 10,25,50,100 --concurrency 1,2,4
  memdiag sweep import --param variant=accumulate,stream --param records=5000,20000,50000 \\
      --batch 50,200 --repeat 2 --at records=220000 --confirm
  memdiag sweep import --param variant=stream --batch auto --max batch=4000
  memdiag sweep import --param variant=stream --at records=220000 --sizes auto
  memdiag sweep jobs/sync.py:run --batch 25,50 --budget 512MB,1GB --limit 1GB --timeout 300
  memdiag sweep --batch 10,50,100 -- node sync.js --batch {batch}
  memdiag sweep --batch 25,50,100 --heap-limit 128MB,256MB --budget 512MB,1GB \\
      -- node jobs/import.js --batch {batch}
  memdiag sweep import --batch 10,25,50,100 --resume --jobs 2
  memdiag sweep import --batch 10,25,50,100 --cluster tcp://10.0.0.5:8786
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from memdiag.cli.common import TargetCommand, external_command, positive, size_option
from memdiag.cli.decision_options import (
    decision_options,
    parse_budgets,
    parse_headroom,
    parse_predict,
    parse_reference,
)
from memdiag.errors import MemdiagError
from memdiag.model import Run, Sweep
from memdiag.params import index_of
from memdiag.targets import Target

if TYPE_CHECKING:
    from memdiag.measure.sweep.roles import SweepRunner


@click.command("sweep", cls=TargetCommand, help=__doc__)
@click.argument("target", required=False)
@click.option("--batch", default=None, metavar="N,N,...", help="Batch sizes: the batch axis.")
@click.option("--concurrency", default=None, metavar="N,N,...", help="Concurrency levels: an axis.")
@click.option(
    "--heap-limit",
    default=None,
    metavar="SIZE,SIZE,...",
    help="A Node job's V8 heap limits (--max-old-space-size): the heap_limit axis.",
)
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
@click.option(
    "--max",
    "max_values",
    multiple=True,
    metavar="NAME=VALUE",
    help="Stop an auto search at VALUE (default 65536).",
)
@click.option(
    "--sizes",
    default=None,
    metavar="auto",
    help="With --at: measure further sizes of its axis, doubling toward it, until the "
    "prediction there is settled (starts from the sizes given, or --at/64 and --at/32).",
)
@click.option(
    "--confirm",
    is_flag=True,
    help="Run each decision once at the decision size under --limit = its budget.",
)
@click.option("--quiet", "-q", is_flag=True, help="No progress bar; only the matrix.")
@click.pass_context
def command(ctx: click.Context, /, target: str | None, **options: Any) -> int:
    from memdiag.analysis.sweep import analyse_sweep
    from memdiag.measure.process.runner import RunOptions
    from memdiag.measure.sweep.executor import open_runner
    from memdiag.measure.sweep.grid import default_name, expand, pending_runs
    from memdiag.render.report import save_results, write_report
    from memdiag.render.terminal import TerminalRenderer
    from memdiag.targets import parse_target

    parsed = parse_target(target, external_command(ctx))
    sweep = _plan(parsed, options)
    out = Path(options["out"] or Path("reports") / default_name(parsed))
    sweep = _resume(sweep, out) if options["resume"] else sweep
    grid = {} if sweep.auto else sweep.axes
    if sweep.sizes_auto:  # the sizes added are measured by _grow, under its limit
        grid = {**sweep.axes, sweep.sizes_auto["axis"]: sweep.sizes_auto["given"]}
    todo = [] if sweep.auto else pending_runs(expand(grid, sweep.base), sweep.runs, sweep.repeat)
    run_options = RunOptions(
        interval=positive("--interval", options["interval"]) or 0.1,
        timeout=sweep.timeout_s,
        limit_bytes=sweep.limit_bytes,
    )

    def save(run: Run) -> None:
        for name in sweep.auto:  # a probe adds its value to the searched axis
            if index_of(sweep.axes[name], run.params.get(name)) is None:
                sweep.axes[name] = sorted([*sweep.axes[name], run.params[name]])
        sweep.runs.append(run)
        save_results(analyse_sweep(sweep), out)

    def save_confirmation(run: Run) -> None:
        sweep.confirm_runs.append(run)
        save_results(analyse_sweep(sweep), out)

    try:
        with open_runner(sweep.cluster, parsed) as execute:
            _measure(execute, parsed, [(todo, run_options)], save, sweep.jobs, options["quiet"])
            _grow(execute, parsed, sweep, run_options, save, options["quiet"])
            _search(execute, parsed, sweep, run_options, save, options["quiet"])
            _confirm(execute, parsed, sweep, run_options, save_confirmation, options["quiet"])
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


def _measure(
    execute: SweepRunner,
    target: Target,
    groups: list[tuple[list[dict[str, Any]], Any]],
    on_run: Callable[[Run], None],
    jobs: int,
    quiet: bool,
) -> None:
    """Measure each group of params with its own RunOptions (one limit per group), through
    `execute`: run_sweep here, or the cluster's executor."""
    from memdiag.render.progress import SweepProgress

    for todo, run_options in groups:
        if todo:
            with SweepProgress(len(todo), on_run, quiet=quiet) as progress:
                execute(target, todo, run_options, progress, jobs=jobs)


def _search(
    execute: SweepRunner,
    target: Target,
    sweep: Sweep,
    run_options: Any,
    on_run: Callable[[Run], None],
    quiet: bool,
) -> None:
    """Run the auto search's probes until every budget's search is done."""
    from memdiag.analysis.sweep import searches

    while probes := searches(sweep)[1]:
        _measure(execute, target, _by_limit(probes, run_options), on_run, sweep.jobs, quiet)


def _grow(
    execute: SweepRunner,
    target: Target,
    sweep: Sweep,
    run_options: Any,
    on_run: Callable[[Run], None],
    quiet: bool,
) -> None:
    """`--sizes auto`: measure the next size of the `--at` axis until none is needed, each
    run under a limit of the largest budget (or --limit when lower)."""
    from memdiag.analysis.sizes import next_size
    from memdiag.analysis.sweep import analyse_sweep
    from memdiag.measure.sweep.grid import expand, pending_runs

    if not sweep.sizes_auto:
        return
    axis = sweep.sizes_auto["axis"]
    ceiling = max(sweep.budgets_bytes)
    limit = min(ceiling, run_options.limit_bytes or ceiling)
    limited = dataclasses.replace(run_options, limit_bytes=limit)
    while True:
        todo = pending_runs(expand(sweep.axes, sweep.base), sweep.runs, sweep.repeat)
        _measure(execute, target, [(todo, limited)], on_run, sweep.jobs, quiet)
        size, _ = next_size(analyse_sweep(sweep))
        if size is None:
            return
        sweep.axes[axis] = sorted([*sweep.axes[axis], size])


def _confirm(
    execute: SweepRunner,
    target: Target,
    sweep: Sweep,
    run_options: Any,
    on_run: Callable[[Run], None],
    quiet: bool,
) -> None:
    """Run each pending confirmation under limit = its budget until every decision has one."""
    from memdiag.analysis.sweep import pending_confirmations

    while pending := pending_confirmations(sweep):
        _measure(execute, target, _by_limit(pending, run_options), on_run, sweep.jobs, quiet)


def _by_limit(
    runs: list[tuple[dict[str, Any], int]], run_options: Any
) -> list[tuple[list[dict[str, Any]], Any]]:
    """Group (params, limit bytes) into one run list per limit, each with its RunOptions."""
    groups: dict[int, list[dict[str, Any]]] = {}
    for params, limit in runs:
        groups.setdefault(limit, []).append(params)
    return [
        (todo, dataclasses.replace(run_options, limit_bytes=limit))
        for limit, todo in sorted(groups.items())
    ]


def _plan(target: Target, options: dict[str, Any]) -> Sweep:
    """Return the empty Sweep the options describe; every bad option is a MemdiagError."""
    from memdiag.analysis.matrix import match_reference
    from memdiag.analysis.scaling import size_axes
    from memdiag.cli.auto import auto_axes, check_numeric, parse_max, split_auto
    from memdiag.measure.process.env import collect_env
    from memdiag.measure.sweep.grid import build_axes

    params, batch, concurrency, starts = split_auto(
        options["params"], options["batch"], options["concurrency"]
    )
    auto = parse_max(options["max_values"], starts)
    for name in auto:
        check_numeric(target, name)
    axes, base = build_axes(params, batch, concurrency)
    for name in auto:
        if name in axes or name in base:
            raise MemdiagError(f"{name} is given twice (auto and a value)")
    axes = {**auto_axes(auto), **axes}
    if options["heap_limit"] is not None:
        limits = _heap_limits(target, options["heap_limit"], {**axes, **base})
        if len(limits) > 1:
            axes["heap_limit"] = list(limits)
        else:
            base["heap_limit"] = limits[0]
    for name in ("repeat", "jobs"):
        if options[name] < 1:
            raise MemdiagError(f"--{name} must be at least 1, got {options[name]}")
    reference = parse_reference(options["reference"])
    sizes_auto = _sizes_auto(options, axes, base)
    predict = parse_predict(options["predict"], size_axes(axes, options["size_axis"]))
    if predict and auto:
        raise MemdiagError(
            "--at with auto: the search measures at the given size; fix the size with "
            "--param (e.g. records=220000) instead"
        )
    if options["cluster"]:
        from memdiag.measure.sweep.cluster import parse_cluster

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
        predict=predict,
        size_axes=list(options["size_axis"]),
        auto=auto,
        confirm=options["confirm"],
        sizes_auto=sizes_auto,
        started_at=datetime.now(UTC).isoformat(timespec="seconds"),
        env=collect_env(),
        cluster=options["cluster"] or None,
    )


def _sizes_auto(
    options: dict[str, Any], axes: dict[str, list[Any]], base: dict[str, Any]
) -> dict[str, Any]:
    """`--sizes auto`: make the `--at` axis an axis of the sizes given (one given: it and its
    double; none: --at/64 and --at/32); return {"axis", "given"}, or {} without the option."""
    from memdiag.analysis.sizes import first_sizes
    from memdiag.units import parse_param, parse_value

    if options["sizes"] is None:
        return {}
    if options["sizes"] != "auto":
        raise MemdiagError(f"--sizes: only 'auto' is known, got {options['sizes']!r}")
    if len(options["predict"]) != 1:
        raise MemdiagError("--sizes auto needs one --at AXIS=VALUE to measure toward")
    name, raw = parse_param(options["predict"][0])
    at = parse_value(raw)
    if isinstance(at, bool) or not isinstance(at, int | float) or at <= 0:
        raise MemdiagError(f"--at {name}: {raw!r} is not a positive number")
    if name not in axes:
        if name in base:
            value = base.pop(name)
            axes[name] = [value, 2 * value]
        else:
            axes[name] = first_sizes(at)
    return {"axis": name, "given": list(axes[name])}


def _heap_limits(target: Target, text: str, given: dict[str, Any]) -> list[int]:
    """Return the --heap-limit sizes in bytes, each a whole number of MB, none repeated."""
    from memdiag.measure.node.inject import heap_limit_mb
    from memdiag.units import parse_size

    if target.is_python:
        raise MemdiagError("--heap-limit applies to Node jobs (a command after --)")
    if "heap_limit" in given:
        raise MemdiagError("heap_limit is given twice (--heap-limit and --param heap_limit)")
    items = [item.strip() for item in text.split(",")]
    if any(not item for item in items):
        raise MemdiagError(f"--heap-limit: empty value in {text!r} (give a comma-separated list)")
    limits = [parse_size(item) for item in items]
    for limit in limits:
        heap_limit_mb(limit)
    if len(set(limits)) < len(limits):
        raise MemdiagError(f"--heap-limit: a size is listed twice in {text!r}")
    return sorted(limits)


def _resume(plan: Sweep, out: Path) -> Sweep:
    """Return `plan` holding the runs already saved in `out`, which must be the same sweep."""
    from memdiag.model import load_sweep

    path = out / "results.json"
    if not path.exists():
        click.echo(f"nothing to resume in {out}; starting the sweep", err=True)
        return plan
    saved = load_sweep(path)
    grown = [plan.sizes_auto["axis"]] if plan.sizes_auto else []
    grid = {k: v for k, v in plan.axes.items() if k not in plan.auto and k not in grown}
    saved_grid = {k: v for k, v in saved.axes.items() if k not in plan.auto and k not in grown}
    for what, mine, theirs in (
        ("target", plan.target, saved.target),
        ("axes", grid, saved_grid),
        ("fixed params", plan.base, saved.base),
        ("search", plan.auto, saved.auto),
        ("--sizes auto", plan.sizes_auto, saved.sizes_auto),
    ):
        if mine != theirs:
            raise MemdiagError(
                f"--resume: {path} is a different sweep ({what} {theirs!r}, not {mine!r}); "
                "use another --out or drop --resume"
            )
    plan.runs = list(saved.runs)
    plan.confirm_runs = list(saved.confirm_runs)
    for name in [*plan.auto, *grown]:
        plan.axes[name] = list(saved.axes.get(name, []))
    plan.started_at = saved.started_at or plan.started_at
    return plan
