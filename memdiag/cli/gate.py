"""memdiag gate: fail CI when memory regressed against the baseline.

\b
Compares each configuration of RESULTS (runs, sweeps, pytest reports) with the baseline's,
matched by target and parameter values (batch=50 is batch="50"): change in %, and a
verdict. A median worse than the baseline's by more than --tolerance (10% or 0.1; a bare
10 is an error) is a regression, unless it is still inside the baseline's own min-max
spread ("within noise"); past twice the tolerance it always is. A configuration that was
ok and now fails, or whose median passes --max-peak, fails too. Configurations found on one
side only are listed. Prints a Markdown table; exit 1 on any regression, 0 otherwise; exit
2 when no configuration matches or the --metric is missing on either side.

\b
Examples:
  memdiag gate reports/import/results.json --baseline reports/baseline.json
  memdiag gate reports/ci/*/results.json --baseline reports/baseline.json --md gate.md
  memdiag gate new.json --baseline reports/baseline.json --tolerance 5% --max-peak 1GB
  memdiag gate leaky.json --baseline fixed-baseline.json --ignore-param variant
  memdiag gate new.json --baseline reports/baseline.json --json gate.json
"""

from __future__ import annotations

from pathlib import Path

import click

from memdiag.cli.common import load_comparable, size_option
from memdiag.units import parse_percent


@click.command("gate", help=__doc__)
@click.argument("results", nargs=-1, required=True)
@click.option("--baseline", required=True, metavar="PATH", help="The accepted baseline.")
@click.option(
    "--tolerance",
    default="10%",
    show_default=True,
    metavar="PERCENT",
    help="Allowed worsening: 10% or 0.1.",
)
@click.option("--max-peak", default=None, metavar="SIZE", help="Fail any median peak above SIZE.")
@click.option(
    "--metric",
    type=click.Choice(["peak_rss", "peak_heap", "wall"]),
    default="peak_rss",
    show_default=True,
)
@click.option(
    "--ignore-param",
    "ignore",
    multiple=True,
    metavar="NAME",
    help="Match configurations without this parameter (repeatable).",
)
@click.option("--md", "md_path", default=None, metavar="FILE", help="Also write the Markdown.")
@click.option(
    "--json",
    "json_path",
    default=None,
    metavar="FILE",
    help="Also write the verdicts as JSON (kind gate; `memdiag report` re-renders it).",
)
def command(
    results: tuple[str, ...],
    baseline: str,
    tolerance: str,
    max_peak: str | None,
    metric: str,
    ignore: tuple[str, ...],
    md_path: str | None,
    json_path: str | None = None,
) -> int:
    from memdiag.analysis.gate import compare
    from memdiag.render.markdown import MarkdownRenderer

    allowed = parse_percent(tolerance, name="--tolerance", upper=10.0)
    limit = size_option(max_peak)
    base = load_comparable(baseline)
    current = [entry for path in results for entry in load_comparable(path)]
    result = compare(base, current, metric=metric, tolerance=allowed, max_peak=limit, ignore=ignore)
    text = MarkdownRenderer().gate(result)
    click.echo(text)
    if md_path:
        Path(md_path).parent.mkdir(parents=True, exist_ok=True)
        Path(md_path).write_text(text)
    if json_path:
        from memdiag.model import write_json_atomic

        write_json_atomic(json_path, result.to_dict())
    return 1 if result.failed else 0
