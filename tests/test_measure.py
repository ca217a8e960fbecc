"""The measured run as a library: the peak floor from a large parent, the process tree and
its sampler."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from memdiag.measure import procview
from memdiag.measure import sampler as sampler_module
from memdiag.measure.runner import RunOptions, measure_run
from memdiag.targets import parse_target
from tests.conftest import MB
from tests.jobs import touch

JOBS = str(Path(__file__).with_name("jobs.py"))


def test_peak_floor_from_a_parent_holding_300mb() -> None:
    # ru_maxrss is inherited across fork and exec: without the launcher, a 300 MB parent
    # would report ~310 MB for an empty job.
    ballast = touch(300 * MB)
    run = measure_run(parse_target(f"{JOBS}:empty"), {}, RunOptions())
    assert run.status == "ok"
    assert run.peak_rss_bytes < 40 * MB
    command = measure_run(parse_target(None, ["true"]), {}, RunOptions())
    assert command.peak_rss_bytes < 40 * MB
    del ballast


def test_sampled_timeline_is_relative_and_ordered() -> None:
    run = measure_run(parse_target(f"{JOBS}:spike"), {"mb": 50, "hold_s": 0.3}, RunOptions(0.05))
    times = [s.t_s for s in run.timeline]
    assert times == sorted(times) and times[0] < 0.2
    assert max(s.rss_bytes for s in run.timeline) >= 50 * MB
    assert run.peak_rss_bytes >= max(s.rss_bytes for s in run.timeline)


# A launcher as memdiag's: the job in a session of its own, waited for.
LAUNCHER = (
    "import os, sys; job = os.posix_spawn(sys.executable, sys.argv[1:], os.environ, "
    "setsid=True); os.waitpid(job, 0)"
)
# The job: a thread, a child, and an orphan (`sh` starts `sleep` and exits at once), whose
# pids it writes to argv[1] once they all run.
TREE_JOB = """
import json, os, subprocess, sys, threading, time
started = threading.Event()
def hold():
    started.set()
    time.sleep(60)
thread = threading.Thread(target=hold, daemon=True)
thread.start()
started.wait()
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
orphan = subprocess.run(
    ["sh", "-c", "sleep 60 >/dev/null 2>&1 & echo $!"], capture_output=True, text=True
)
pids = {"child": child.pid, "orphan": int(orphan.stdout), "thread": thread.native_id}
with open(sys.argv[1] + ".tmp", "w") as handle:
    json.dump(pids, handle)
os.replace(sys.argv[1] + ".tmp", sys.argv[1])
time.sleep(60)
"""


def _start_tree(argv: list[str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-I", "-S", "-c", LAUNCHER, sys.executable, *argv])


def _stop_tree(launcher: subprocess.Popen[bytes], job: int | None) -> None:
    if job is not None:
        os.killpg(job, signal.SIGKILL)  # the job's session: the orphan too
    launcher.kill()
    launcher.wait()


def _job_pid(launcher: subprocess.Popen[bytes]) -> int:
    children = Path(f"/proc/{launcher.pid}/task/{launcher.pid}/children")
    deadline = time.monotonic() + 10
    while not children.read_text().split():
        assert time.monotonic() < deadline, "the launcher started no job"
        time.sleep(0.01)
    return int(children.read_text().split()[0])


@pytest.mark.parametrize("in_order", [True, False], ids=["pids-handed-out", "listing"])
def test_descendants_count_children_and_orphans_not_threads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, in_order: bool
) -> None:
    # No periodic listing of /proc in between: what the first refresh after the tree was
    # built finds, the pids handed out since (or, without them, the listing) found.
    monkeypatch.setattr(procview, "FULL_SCAN_S", 3600.0)
    unrelated = subprocess.Popen(["sleep", "60"])
    out = tmp_path / "pids.json"
    launcher = _start_tree(["-c", TREE_JOB, str(out)])
    tree = procview.Descendants(launcher.pid)
    tree._in_order &= in_order
    tree.refresh()
    job = None
    try:
        job = _job_pid(launcher)
        deadline = time.monotonic() + 20
        while not out.exists():
            assert time.monotonic() < deadline, "the job did not start its processes"
            time.sleep(0.01)
        pids = json.loads(out.read_text())
        assert tree.refresh()
        assert tree.pids == {job, pids["child"], pids["orphan"]}
        assert pids["thread"] != job and unrelated.pid not in tree.pids
        assert Path(f"/proc/{pids['orphan']}/stat").read_text().split()[3] != str(job)
        assert set(tree.stats()) == tree.pids
        os.kill(pids["orphan"], signal.SIGKILL)  # init reaps it at once
        deadline = time.monotonic() + 10
        while pids["orphan"] in tree.pids:
            assert time.monotonic() < deadline, "an exited process stayed in the tree"
            tree.refresh()
            time.sleep(0.01)
    finally:
        tree.close()
        _stop_tree(launcher, job)
        unrelated.kill()
        unrelated.wait()


IDLE_TREE_JOB = """
import os, sys, time
block = bytearray(int(sys.argv[1]) * 1024 * 1024)
block[::4096] = b"\\x01" * len(range(0, len(block), 4096))
for _ in range(2):
    if os.fork() == 0:
        sum(block[::4096])
        time.sleep(60)
        os._exit(0)
time.sleep(60)
"""


def test_pss_is_not_read_again_while_the_tree_holds_still(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Reading smaps_rollup walks every mapping (about 4 ms for 200 MB): an idle tree of
    # three processes sharing 100 MB, near its limit, is read once, then not again.
    launcher = _start_tree(["-c", IDLE_TREE_JOB, "100"])
    job = None
    try:
        job = _job_pid(launcher)
        tree = procview.Descendants(launcher.pid)
        deadline = time.monotonic() + 20
        while len(tree.pids) < 3 or max(s.rss_bytes for s in tree.stats().values()) < 100 * MB:
            assert time.monotonic() < deadline, "the tree did not build"
            tree.refresh()
            time.sleep(0.05)
        time.sleep(0.3)
        tree.refresh()
        pss = sum(procview.read_rollup(pid)["Pss"] for pid in tree.pids)
        tree.close()
        reads: list[int] = []

        def counted(pid: int | str = "self") -> dict[str, int]:
            reads.append(int(pid))
            return procview.read_rollup(pid)

        monkeypatch.setattr(sampler_module, "read_rollup", counted)
        # 85% of the limit: checks every 2 ms, PSS re-read up to 10% of the time if it moved.
        sampler = sampler_module.TreeSampler(launcher.pid, 0.1, int(pss / 0.85))
        sampler.start()
        time.sleep(2.0)
        sampler.stop()
        assert sampler.limit_hit is None
        assert sampler.max_rss < 1.1 * pss  # shared pages once: PSS, not the RSS sum
        print(f"{len(reads)} smaps_rollup reads in 2 s")
        assert 3 <= len(reads) <= 3 * 3
    finally:
        _stop_tree(launcher, job)


def _sampler_cpu(root: int, limit: int, window_s: float) -> float:
    """Return the CPU seconds the sampler's thread spends per second, following `root`."""
    sampler = sampler_module.TreeSampler(root, 0.1, limit)
    sampler.start()
    try:
        assert sampler.ident is not None
        clock = time.pthread_getcpuclockid(sampler.ident)
        time.sleep(0.2)  # past its first listing of /proc
        cpu, started = time.clock_gettime(clock), time.monotonic()
        time.sleep(window_s)
        return (time.clock_gettime(clock) - cpu) / (time.monotonic() - started)
    finally:
        sampler.stop()


def test_sampler_cost_does_not_grow_with_the_machines_processes() -> None:
    # A check every 20 ms (a limit far away) on a one-process job, with and without 400
    # idle processes on the machine. Listing /proc at every check cost 2.2x more with them.
    launcher = _start_tree(["-c", "import time; time.sleep(60)"])
    job, idle = None, []
    try:
        job = _job_pid(launcher)
        alone, crowded = [], []
        for _ in range(2):  # interleaved: the machine is shared
            alone.append(_sampler_cpu(launcher.pid, 4096 * MB, 1.5))
            idle = [subprocess.Popen(["sleep", "60"]) for _ in range(400)]
            crowded.append(_sampler_cpu(launcher.pid, 4096 * MB, 1.5))
            for proc in idle:
                proc.kill()
            for proc in idle:
                proc.wait()
            idle = []
        print(f"sampler CPU: {min(alone) * 1000:.1f} ms/s alone, {min(crowded) * 1000:.1f} crowded")
        assert min(crowded) < 1.4 * min(alone) + 0.002
    finally:
        for proc in idle:
            proc.kill()
            proc.wait()
        _stop_tree(launcher, job)
