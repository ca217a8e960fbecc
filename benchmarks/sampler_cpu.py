"""The CPU time `memdiag run`'s sampler thread spends per second of a job's life, by revision.

The sampler runs in memdiag while the job runs; on a shared machine its CPU is taken from the
job. CPU seconds of that one thread (its own clock, CLOCK_THREAD_CPUTIME_ID) are far less
noisy than wall times. Each revision's `memdiag/measure/process/sampler.py` samples the same
synthetic tree: a launcher (a bare interpreter in a session of its own) and its job, which
touches MB megabytes and forks PROCS-1 workers that only read it, then sleeps. Revisions are
measured interleaved, one subprocess per measurement, and the median is kept.

    python benchmarks/sampler_cpu.py --rev 465915d --rev . [--rounds 3] [--window 4]
        [--host-procs 0,400]

`--rev .` is the working tree; any other value is a git revision, whose `memdiag/` is
extracted to a temporary folder. `--host-procs N` starts N idle `sleep` processes first: a
sampler that scans all of /proc costs more on a host running many processes.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MB = 1024 * 1024
INTERVAL_S = 0.1  # memdiag run's default --interval
SETTLE_S = 1.0  # the tree is built: what is measured is the steady cost per job-second

# The launcher stand-in: the job in a session of its own, waited for (as the launcher does).
LAUNCHER = "import os, sys; job = os.posix_spawn(sys.executable, sys.argv[1:], os.environ, setsid=True); os.waitpid(job, 0)"  # noqa: E501
JOB = """
import os, sys, time
mb, procs = int(sys.argv[1]), int(sys.argv[2])
block = bytearray(mb * 1024 * 1024)
block[::4096] = b"\\x01" * len(range(0, len(block), 4096))
for _ in range(procs - 1):
    if os.fork() == 0:
        sum(block[::4096])
        time.sleep(600)
        os._exit(0)
time.sleep(600)
"""
# name: (MB held, processes, --limit in MB or None)
SCENARIOS: dict[str, tuple[int, int, int | None]] = {
    "no limit, 1 process, 50 MB": (50, 1, None),
    "no limit, 3 processes, 200 MB shared": (200, 3, None),
    "limit far (4 GB), 1 process, 50 MB": (50, 1, 4096),
    "limit far (4 GB), 3 processes, 200 MB shared": (200, 3, 4096),
    "limit near (85%), 1 process, 200 MB": (200, 1, 235),
    "limit near (85%), 3 processes, 200 MB shared": (200, 3, 245),
}


def worker(src: str, mb: int, procs: int, limit_mb: int, window: float) -> None:
    """Print one measurement, as JSON, of the sampler in `src` (run in a process of its own:
    each revision imports its own `memdiag`)."""
    sys.path.insert(0, src)
    import memdiag.measure.process.sampler as sampler_module

    assert sampler_module.__file__ and sampler_module.__file__.startswith(src)
    argv = [sys.executable, "-I", "-S", "-c", LAUNCHER, sys.executable, "-c", JOB]
    launcher = subprocess.Popen([*argv, str(mb), str(procs)])
    try:
        time.sleep(SETTLE_S)
        reads = [0]
        rollup = getattr(sampler_module, "read_rollup", None)  # older samplers read no PSS
        if rollup is not None:

            def counted(pid: int) -> dict[str, int]:
                reads[0] += 1
                return rollup(pid)  # type: ignore[no-any-return]

            setattr(sampler_module, "read_rollup", counted)  # noqa: B010
        limit = limit_mb * MB if limit_mb else None
        sampler = sampler_module.TreeSampler(launcher.pid, INTERVAL_S, limit, None)
        sampler.start()
        assert sampler.ident is not None
        clock = time.pthread_getcpuclockid(sampler.ident)
        started, cpu = time.monotonic(), time.clock_gettime(clock)
        time.sleep(window)
        cpu, elapsed = time.clock_gettime(clock) - cpu, time.monotonic() - started
        sampler.stop()
        result = {"cpu_per_s": cpu / elapsed, "pss_reads_per_s": reads[0] / elapsed}
        print(json.dumps({**result, "limit_hit": sampler.limit_hit is not None}))
    finally:
        try:
            children = Path(f"/proc/{launcher.pid}/task/{launcher.pid}/children").read_text()
            os.killpg(int(children.split()[0]), signal.SIGKILL)  # the job's session
        except (OSError, IndexError, ValueError):
            pass
        launcher.kill()
        launcher.wait()


def source(rev: str, tmp: Path) -> Path:
    """Return a folder holding `memdiag/` as of `rev` (`.`: the working tree)."""
    if rev == ".":
        return ROOT
    folder = tmp / rev.replace("/", "_")
    folder.mkdir()
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", rev, "memdiag"], check=True, capture_output=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(folder)], input=archive, check=True)
    return folder


def measure(src: Path, scenario: tuple[int, int, int | None], window: float) -> dict[str, float]:
    """Return one measurement of the sampler of `src` on the scenario's tree."""
    mb, procs, limit = scenario
    argv = [sys.executable, __file__, "--worker", str(src), str(mb), str(procs), str(limit or 0)]
    argv.append(str(window))
    done = subprocess.run(argv, capture_output=True, text=True, timeout=window + 60)
    if done.returncode != 0:
        raise RuntimeError(done.stderr)
    result: dict[str, float] = json.loads(done.stdout)
    return result


def main() -> None:
    if sys.argv[1:2] == ["--worker"]:
        src, mb, procs, limit, window = sys.argv[2:7]
        worker(src, int(mb), int(procs), int(limit), float(window))
        return
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rev", action="append", required=True, help="a git revision or .")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--window", type=float, default=4.0)
    parser.add_argument("--host-procs", default="0")
    parser.add_argument("--only", action="append", default=[], help="scenario name substring")
    args = parser.parse_args()
    scenarios = {
        k: v for k, v in SCENARIOS.items() if not args.only or any(o in k for o in args.only)
    }
    with tempfile.TemporaryDirectory() as tmp:
        sources = {rev: source(rev, Path(tmp)) for rev in args.rev}
        print(f"| host processes | tree | {' | '.join(args.rev)} |")
        print(f"| --- | --- |{' ---: |' * len(args.rev)}")
        for host in map(int, args.host_procs.split(",")):
            idle = [subprocess.Popen(["sleep", "600"]) for _ in range(host)]
            try:
                for name, scenario in scenarios.items():
                    runs: dict[str, list[dict[str, float]]] = {rev: [] for rev in args.rev}
                    for _ in range(args.rounds):
                        for rev, folder in sources.items():
                            runs[rev].append(measure(folder, scenario, args.window))
                    cells = []
                    for rev in args.rev:
                        cpu = statistics.median(r["cpu_per_s"] for r in runs[rev])
                        pss = statistics.median(r["pss_reads_per_s"] for r in runs[rev])
                        hit = " (limit hit)" if any(r["limit_hit"] for r in runs[rev]) else ""
                        cells.append(f"{cpu * 1000:.1f} ms/s, PSS {pss:.1f}/s{hit}")
                    total = len(list(Path("/proc").glob("[0-9]*")))
                    print(f"| {total} | {name} | {' | '.join(cells)} |", flush=True)
            finally:
                for proc in idle:
                    proc.kill()
                for proc in idle:
                    proc.wait()


if __name__ == "__main__":
    main()
