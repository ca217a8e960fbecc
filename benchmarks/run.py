"""Runs every benchmarks/bench_*.py and writes their sections to docs/performance.md.

Each module has `run(repeats: int) -> str`, returning a Markdown section (a `##` heading,
the commands that reproduce it, and a table). Ratios are measured side by side, interleaved,
in one run: the machine is shared and noisy, so medians of interleaved runs are compared.

    python benchmarks/run.py --out docs/performance.md [--only run] [--repeats 5]

With `--only`, the other sections already in the file are kept as they are.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import platform
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", default="docs/performance.md")
    parser.add_argument("--only", action="append", default=[], help="bench_NAME to run")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    sections: dict[str, str] = _kept_sections(Path(args.out)) if args.only else {}
    for path in sorted(HERE.glob("bench_*.py")):
        name = path.stem.removeprefix("bench_")
        if args.only and name not in args.only:
            continue
        spec = importlib.util.spec_from_file_location(path.stem, path)
        assert spec and spec.loader
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        started = time.monotonic()
        print(f"bench {name} ...", file=sys.stderr, flush=True)
        section = _stamped(module.run(args.repeats))
        sections[section.split("\n", 1)[0]] = section
        print(f"bench {name}: {time.monotonic() - started:.0f} s", file=sys.stderr, flush=True)
    header = (
        "# Performance\n\n"
        "Written by `make bench` (`python benchmarks/run.py --out docs/performance.md`). "
        "Every ratio is measured side by side in one run, interleaved, as medians: the "
        "machine is shared and noisy. Each section says when and on what it was measured "
        "(with `--only`, the other sections are kept as they were).\n"
    )
    body = "\n".join(s.rstrip("\n") + "\n" for s in sections.values())
    Path(args.out).write_text(header + "\n" + body)
    print(f"wrote {args.out}", file=sys.stderr)


def _stamped(section: str) -> str:
    """Return `section` with the time and the machine of its measurement under its heading."""
    heading, _, rest = section.partition("\n")
    stamp = (
        f"_Measured {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on {platform.platform()}, "
        f"{os.cpu_count()} CPUs, Python {platform.python_version()}._"
    )
    return f"{heading}\n\n{stamp}\n{rest}"


def _kept_sections(out: Path) -> dict[str, str]:
    """Return the `##` sections already in `out`, by heading line, in their order."""
    if not out.exists():
        return {}
    parts = out.read_text().split("\n## ")[1:]
    return {f"## {p.split(chr(10), 1)[0]}": f"## {p}" for p in parts}


if __name__ == "__main__":
    main()
