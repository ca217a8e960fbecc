"""memdiag diff: what grew between two snapshots, allocation sites and object types.

\b
Both files are snapshots written by `memdiag snapshot` (or `memdiag leaks --out`), or V8
heap snapshots (`.heapsnapshot`, with `memdiag[node]`). Sites and types that grew are listed
largest growth first, with sizes and counts; a site or type found in only one snapshot counts
as zero in the other. For V8 snapshots also constructors and the largest retainers (matched by
V8 node id) by the growth of their retained size, each with its path as JavaScript.

\b
Examples:
  memdiag diff reports/snapshot/before.json reports/snapshot/after.json
  memdiag diff a.json b.json --min-growth 1MB --top 10 --json reports/diff.json
  memdiag diff before.heapsnapshot after.heapsnapshot
"""

from __future__ import annotations

import click

from memdiag.units import parse_size


@click.command("diff", help=__doc__)
@click.argument("before", type=click.Path(dir_okay=False))
@click.argument("after", type=click.Path(dir_okay=False))
@click.option(
    "--min-growth",
    default=None,
    metavar="SIZE",
    help="Leave out what grew by less than SIZE (512KB, 1MB).",
)
@click.option(
    "--top",
    type=click.IntRange(1),
    default=20,
    show_default=True,
    help="Sites and types listed, each.",
)
@click.option(
    "--frames",
    type=click.IntRange(1),
    default=3,
    show_default=True,
    help="Traceback frames shown per site.",
)
@click.option(
    "--json",
    "json_path",
    default=None,
    metavar="PATH",
    help="Write the diff as JSON to PATH ('-' for stdout).",
)
def command(
    before: str, after: str, min_growth: str | None, top: int, frames: int, json_path: str | None
) -> int:
    from memdiag.analysis.heapdiff import compare_heap_snapshots
    from memdiag.measure.node.summary import load_any_snapshot

    old, new = load_any_snapshot(before), load_any_snapshot(after)
    diff = compare_heap_snapshots(old, new, parse_size(min_growth) if min_growth else 0, top)
    if json_path == "-":
        from memdiag.model import dumps

        click.echo(dumps(diff.to_dict()))
        return 0
    if json_path:
        from memdiag.model import write_json_atomic

        write_json_atomic(json_path, diff.to_dict())
    from memdiag.render.terminal import SnapshotRenderer

    SnapshotRenderer(frames=frames).diff(diff)
    if json_path:
        click.echo(f"json: {json_path}")
    return 0
