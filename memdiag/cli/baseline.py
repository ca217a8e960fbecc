"""memdiag baseline: accept results as the baseline a CI gate compares against.

\b
Takes runs (`memdiag run --json`), sweeps (`results.json`), pytest reports
(`--memdiag-report`) or baselines, and writes one small, reviewable file: per configuration
its target, parameters, status, and the median and spread of peak RSS, peak heap and wall
time. Commit it; `memdiag gate` reads it.

\b
Examples:
  memdiag baseline reports/import/results.json -o reports/baseline.json
  memdiag baseline reports/ci/*/results.json -o reports/baseline.json
  memdiag baseline reports/pytest-memory.json -o reports/pytest-baseline.json
"""

from __future__ import annotations

import click


@click.command("baseline", help=__doc__)
@click.argument("results", nargs=-1, required=True)
@click.option("-o", "--out", "out", required=True, metavar="PATH", help="Where to write it.")
def command(results: tuple[str, ...], out: str) -> int:
    from memdiag.analysis.gate import make_baseline
    from memdiag.cli.common import load_comparable
    from memdiag.measure.process.env import collect_env
    from memdiag.model import write_json_atomic

    entries = [entry for path in results for entry in load_comparable(path)]
    baseline = make_baseline(entries, list(results), collect_env())
    write_json_atomic(out, baseline)
    click.echo(f"baseline: {out} ({len(baseline['configs'])} configurations)")
    return 0
