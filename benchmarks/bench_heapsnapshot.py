"""V8 heap snapshot summary: time and extra RSS for a generated snapshot of about 2.6 M nodes.

`python benchmarks/bench_heapsnapshot.py [NODES_RECORDS]`: node writes the snapshot of a
service holding NODES_RECORDS records (300,000: about 2.65 M nodes, 183 MB), then a fresh
Python summarises it (read, dominators, constructors, retainers) and prints seconds and its
RSS high-water mark above the interpreter's with numpy imported. `run(repeats)` is the
`heapsnapshot` section of `benchmarks/run.py`: medians of `repeats` fresh summaries.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

JOB = """\
const { EventEmitter } = require('events');
const service = globalThis.service = { processedRecords: new Set(), cache: new Map(),
  bus: new EventEmitter() };
service.bus.setMaxListeners(0);
for (let i = 0; i < Number(process.argv[2]); i++) {
  const rec = { id: i, name: 'player-' + i, tags: ['a' + (i % 100), 'b'], score: { v: i * 1.5 } };
  service.cache.set(i, rec);
  service.processedRecords.add('key-' + i);
  if (i % 50 === 0) service.bus.on('progress', () => rec.id);
}
require('v8').writeHeapSnapshot(process.argv[3]);
"""

MEASURE = """\
import resource, sys, time
import numpy
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
start = time.perf_counter()
from memdiag.measure.node.summary import snapshot_from_heapsnapshot
snap = snapshot_from_heapsnapshot(sys.argv[1])
wall = time.perf_counter() - start
extra = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - base
print(f"{snap.heap_nodes} nodes: {wall:.1f} s, extra RSS {extra / 2**20:.0f} MB; "
      f"top retainer {snap.retainers[0]['expression']}")
print(wall, extra, snap.heap_nodes)
"""
RECORDS = 300_000
# memlab `analyze object-size` on a 187 MB snapshot of 2.96 M nodes, as issue 24 measured it.
MEMLAB = (17.3, 993)


def measure(snapshot: Path) -> tuple[float, int, int]:
    """Return seconds, extra RSS in bytes and node count of one summary in a fresh Python."""
    out = (
        subprocess.run(
            [sys.executable, "-c", MEASURE, str(snapshot)],
            check=True,
            capture_output=True,
            text=True,
        )
        .stdout.splitlines()[-1]
        .split()
    )
    return float(out[0]), int(out[1]), int(out[2])


def run(repeats: int) -> str:
    with tempfile.TemporaryDirectory() as folder:
        job, out = Path(folder) / "job.js", Path(folder) / "big.heapsnapshot"
        job.write_text(JOB)
        subprocess.run(["node", str(job), str(RECORDS), str(out)], check=True)
        size = out.stat().st_size
        results = [measure(out) for _ in range(repeats)]
    wall = statistics.median(r[0] for r in results)
    extra = statistics.median(r[1] for r in results)
    nodes = results[0][2]
    mb = 2**20
    return (
        "## V8 heap snapshots\n\n"
        f"node writes the snapshot of a service holding {RECORDS:,} records "
        f"({size / mb:.0f} MB, {nodes:,} nodes); a fresh Python summarises it (read, "
        "dominators, constructors, retainers: `snapshot_from_heapsnapshot`), its RSS "
        f"high-water mark taken above the interpreter's with numpy imported. Medians of "
        f"{repeats} runs. Goal (issue 24): a 190 MB snapshot of ~3 M nodes in under 5 s and "
        "under 1× the file's size in extra RSS.\n\n"
        "```\npython benchmarks/run.py --only heapsnapshot\n"
        f"python benchmarks/bench_heapsnapshot.py {RECORDS}\n```\n\n"
        "| summary | s | extra RSS MB | × file size |\n| --- | --- | --- | --- |\n"
        f"| memdiag | {wall:.1f} | {extra / mb:.0f} | {extra / size:.2f}× |\n"
        f"| memlab `analyze object-size`, 187 MB, 2.96 M nodes (published in issue 24) "
        f"| {MEMLAB[0]} | {MEMLAB[1]} | {MEMLAB[1] * mb / (187 * mb):.2f}× |\n\n"
        f"- goal under 5 s: {'met' if wall < 5 else 'not met'}; under 1× the file in extra "
        f"RSS: {'met' if extra < size else 'not met'}.\n"
    )


def main(records: int = RECORDS) -> None:
    with tempfile.TemporaryDirectory() as folder:
        job, out = Path(folder) / "job.js", Path(folder) / "big.heapsnapshot"
        job.write_text(JOB)
        subprocess.run(["node", str(job), str(records), str(out)], check=True)
        print(f"snapshot: {out.stat().st_size / 2**20:.0f} MB")
        subprocess.run([sys.executable, "-c", MEASURE, str(out)], check=True)


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:]))
