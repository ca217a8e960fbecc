"""memdiag engines: list the installed engines, their parameters and defaults.

\b
Engines are jobs registered in the `memdiag.engines` entry-point group (docs/engines.md
shows how to register your own). A broken engine is listed with its error.

\b
Examples:
  memdiag engines
  memdiag engines --json -
"""

from __future__ import annotations

import json
import sys
from dataclasses import asdict

import click


@click.command("engines", help=__doc__)
@click.option("--json", "json_path", default=None, metavar="PATH", help="Write the list as JSON.")
def command(json_path: str | None) -> int:
    from memdiag.engines import REFERENCE_HINT, describe_engines

    engines = describe_engines()
    if json_path:
        data = [asdict(e) for e in engines]
        if json_path == "-":
            json.dump(data, sys.stdout, indent=1, default=repr)
            sys.stdout.write("\n")
        else:
            from memdiag.model import write_json_atomic

            write_json_atomic(json_path, data)
        return 0
    if not engines:
        click.echo(f"no engines installed (entry-point group memdiag.engines); {REFERENCE_HINT}")
    for engine in engines:
        click.secho(engine.name, bold=True, nl=False)
        click.echo(f"  {engine.target}")
        if engine.error:
            click.secho(f"    broken: {engine.error}", fg="red")
            continue
        if engine.description:
            click.echo(f"    {engine.description}")
        for name, default in engine.params.items():
            click.echo(
                f"    --param {name}={default!r}" if default is not None else f"    --param {name}"
            )
    return 0
