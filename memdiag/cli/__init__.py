"""The `memdiag` command: a thin group whose subcommands are imported only when used.

Bad input of any kind (ours or click's) is printed as one line on stderr with exit code 2.
"""

from __future__ import annotations

import importlib
import sys

import click

from memdiag import __version__
from memdiag.errors import MemdiagError

# name -> (module, one-line help). Listed here so `memdiag --help` imports no command.
COMMANDS: dict[str, tuple[str, str]] = {
    "run": ("memdiag.cli.run", "One isolated, measured run: exact peak, timeline, status."),
    "sweep": (
        "memdiag.cli.sweep",
        "Measure a grid of batch sizes, concurrency and parameters; decide per budget.",
    ),
    "snapshot": (
        "memdiag.cli.snapshot",
        "Before/after snapshots of one run and their diff, or a process view (--pid).",
    ),
    "diff": ("memdiag.cli.diff", "What grew between two snapshots: sites and types."),
    "leaks": (
        "memdiag.cli.leaks",
        "Growth per iteration, named to file:line, type and what keeps it alive.",
    ),
    "report": ("memdiag.cli.report", "Re-render a saved sweep's report from its results.json."),
    "baseline": ("memdiag.cli.baseline", "Accept results as the baseline for the CI gate."),
    "gate": ("memdiag.cli.gate", "Fail CI on a memory regression against the baseline."),
    "engines": ("memdiag.cli.engines", "List the installed engines and their parameters."),
    "monitor": (
        "memdiag.cli.monitor",
        "Follow memory over time: thresholds, events, growth and a leak verdict.",
    ),
    "serve": (
        "memdiag.cli.serve",
        "Serve a process's memory as /api/health/memory and Prometheus /metrics.",
    ),
}


class LazyGroup(click.Group):
    """A group that imports a subcommand's module only when that subcommand is named."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in COMMANDS:
            return None
        module = importlib.import_module(COMMANDS[cmd_name][0])
        command: click.Command = module.command
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        with formatter.section("Commands"):
            formatter.write_dl([(name, text) for name, (_, text) in COMMANDS.items()])


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="memdiag")
def cli() -> None:
    """Memory profiling and diagnostics for batch jobs and long-running services.

    \b
    Examples:
      memdiag engines
      memdiag run import --param variant=accumulate --json reports/run.json --plot run.png
      memdiag run mypkg.jobs:sync_players --batch 50 --heap
      memdiag run jobs/sync.py:run --param records=10000 --limit 512MB
      memdiag run --batch 25 --timeout 60 -- node sync.js --batch {batch}
    """
    # /proc, smaps and ru_maxrss in KiB are Linux's: elsewhere every figure would be wrong.
    if not sys.platform.startswith("linux"):
        raise MemdiagError(f"memdiag runs on Linux only (it reads /proc), not on {sys.platform}")


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the CLI and turn every bad input into one line and exit code 2."""
    try:
        code = cli.main(args=argv, prog_name="memdiag", standalone_mode=False)
    except MemdiagError as exc:
        click.echo(f"memdiag: error: {exc.message}", err=True)
        sys.exit(exc.exit_code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        click.echo(f"memdiag: error: {exc.format_message()}", err=True)
        sys.exit(2)
    except click.exceptions.Abort:
        click.echo("memdiag: interrupted", err=True)
        sys.exit(130)
    sys.exit(code if isinstance(code, int) else 0)
