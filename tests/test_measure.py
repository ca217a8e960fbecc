"""The measured run as a library: the peak floor from a large parent, the process tree and
its sampler."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from memdiag.measure.process import procview
from memdiag.measure.process import sampler as sampler_module
from memdiag.measure.process.runner import RunOptions, measure_run
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
    assert times == sorted(times) and times[0] >= 0
    # sampled from before the job's 50 MB (it waits 0.3 s first), through it
    assert run.timeline[0].rss_bytes < 50 * MB
    assert 50 * MB <= max(s.rss_bytes for s in run.timeline) <= 50 * MB + 30 * MB
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


@contextlib.contextmanager
def idle_tree(mb: int) -> Iterator[tuple[int, procview.Descendants]]:
    """Run IDLE_TREE_JOB under a launcher until its three processes each hold their `mb` MB
    (shared); give the launcher's pid and the tree; stop them after."""
    launcher = _start_tree(["-c", IDLE_TREE_JOB, str(mb)])
    job = None
    try:
        job = _job_pid(launcher)
        tree = procview.Descendants(launcher.pid)
        try:
            deadline = time.monotonic() + 20
            while len(tree.pids) < 3 or min(s.rss_bytes for s in tree.stats().values()) < mb * MB:
                assert time.monotonic() < deadline, "the tree did not build"
                tree.refresh()
                time.sleep(0.05)
            yield launcher.pid, tree
        finally:
            tree.close()
    finally:
        _stop_tree(launcher, job)


def test_pss_is_not_read_again_while_the_tree_holds_still(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Reading smaps_rollup walks every mapping (about 4 ms for 200 MB): an idle tree of
    # three processes sharing 100 MB, near its limit, is read once, then not again.
    with idle_tree(100) as (root, tree):
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
        sampler = sampler_module.TreeSampler(root, 0.1, int(pss / 0.85))
        sampler.start()
        time.sleep(2.0)
        sampler.stop()
        assert sampler.limit_hit is None
        assert sampler.max_rss < 1.1 * pss  # shared pages once: PSS, not the RSS sum
        print(f"{len(reads)} smaps_rollup reads in 2 s")
        assert 3 <= len(reads) <= 3 * 3


def test_sampler_does_not_list_proc_at_every_check(monkeypatch: pytest.MonkeyPatch) -> None:
    # A check every 20 ms (a limit far away) on a one-process job, with 400 idle processes
    # on the machine: listing /proc at every check cost 2.2x the CPU with them. New pids are
    # found from those handed out; /proc is listed once a second (FULL_SCAN_S) at most.
    # (Its CPU is for the benchmark: benchmarks/sampler_cpu.py --host-procs 0,400.)
    launcher = _start_tree(["-c", "import time; time.sleep(60)"])
    job, idle = None, []
    listings: list[float] = []
    refreshes: list[float] = []
    real_list, real_refresh = procview.Descendants._list, procview.Descendants.refresh

    def counted_list(self: procview.Descendants, now: float, last: int | None) -> Any:
        listings.append(now)
        return real_list(self, now, last)

    def counted_refresh(self: procview.Descendants) -> bool:
        refreshes.append(time.monotonic())
        return real_refresh(self)

    monkeypatch.setattr(procview.Descendants, "_list", counted_list)
    monkeypatch.setattr(procview.Descendants, "refresh", counted_refresh)
    try:
        job = _job_pid(launcher)
        idle = [subprocess.Popen(["sleep", "60"]) for _ in range(400)]
        sampler = sampler_module.TreeSampler(launcher.pid, 0.1, 4096 * MB)
        sampler.start()
        time.sleep(1.5)
        sampler.stop()
        span = refreshes[-1] - refreshes[0]
        assert len(refreshes) >= 20  # it did check, many times
        assert len(listings) <= 2 + span / procview.FULL_SCAN_S, (len(listings), len(refreshes))
    finally:
        for proc in idle:
            proc.kill()
            proc.wait()
        _stop_tree(launcher, job)


RUN_JOBS = str(Path(__file__).with_name("run_jobs.py"))


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_a_launcher_killed_by_sigkill_leaves_no_job_running(tmp_path: Path) -> None:
    pids = tmp_path / "pids.json"
    run = measure_run(parse_target(f"{RUN_JOBS}:orphaned"), {"pids": str(pids)}, RunOptions())
    assert run.status == "error" and run.error is not None
    assert "launcher ended by SIGKILL" in run.error.message
    job, child = json.loads(pids.read_text())
    # gone by the time measure_run returns: killed through the run's marker, not waited for
    assert not _alive(job) and not _alive(child)


def test_a_failed_start_leaks_no_pipe_and_leaves_no_launcher(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fds = len(os.listdir("/proc/self/fd"))
    with pytest.raises(TypeError):  # Popen refuses a non-string environment value
        measure_run(parse_target(None, ["true"]), {}, RunOptions(env={"X": 1}))  # type: ignore[dict-item]
    assert len(os.listdir("/proc/self/fd")) == fds  # the lifeline pipe was closed

    def broken(self: sampler_module.TreeSampler) -> None:
        raise RuntimeError("the sampler could not start")

    # anything raising once the launcher runs: the launcher is stopped and waited for
    monkeypatch.setattr(sampler_module.TreeSampler, "start", broken)
    with pytest.raises(RuntimeError):
        measure_run(parse_target(None, ["sleep", "30"]), {}, RunOptions())
    assert psutil.Process().children() == []  # not even a zombie: it was waited for
    assert len(os.listdir("/proc/self/fd")) == fds


def test_the_leftover_check_sees_orphans_not_only_descendants() -> None:
    from tests.conftest import leftover_processes, session_processes

    before = session_processes()
    # `sh` starts `sleep` and exits: the sleep is reparented, no descendant of pytest any more
    out = subprocess.run(
        ["sh", "-c", "sleep 30 >/dev/null 2>&1 & echo $!"], capture_output=True, text=True
    )
    orphan = psutil.Process(int(out.stdout))
    try:
        assert orphan not in psutil.Process().children(recursive=True)
        assert orphan in leftover_processes(before)
    finally:
        orphan.kill()
        orphan.wait(timeout=10)


def test_a_tree_whose_pss_cannot_be_read_is_limited_by_its_rss_sum(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Three processes sharing 100 MB: 100 MB each in RSS, about 100 MB in all in PSS.
    with idle_tree(100) as (root, tree):
        stats = tree.stats()
        tree.close()
        largest, total = (
            max(s.rss_bytes for s in stats.values()),
            sum(s.rss_bytes for s in stats.values()),
        )

        def unreadable(pid: int | str = "self") -> dict[str, int]:
            raise PermissionError(13, "Permission denied", f"/proc/{pid}/smaps_rollup")

        monkeypatch.setattr(sampler_module, "read_rollup", unreadable)
        # a limit above any one process, below the three together
        sampler = sampler_module.TreeSampler(root, 0.1, (largest + total) // 2)
        sampler.start()
        deadline = time.monotonic() + 10
        while sampler.limit_hit is None and time.monotonic() < deadline:
            time.sleep(0.02)
        sampler.stop()
        assert sampler.pss_unreadable
        # enforced on the tree as a whole (PSS 0 made it the largest process: never stopped)
        assert sampler.limit_hit is not None
        assert 0.9 * total <= sampler.limit_hit <= 1.1 * total


def test_confirmations_past_the_limit_are_read_within_their_share(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with idle_tree(10) as (root, _):
        limit, cost = 1024 * MB, 0.004
        sampler = sampler_module.TreeSampler(root, 0.1, limit)
        # Every estimate may be past the limit and every PSS read finds the tree within it,
        # as for a job that keeps forking short-lived workers.
        monkeypatch.setattr(sampler, "_estimate", lambda stats, rss: (limit // 2, limit + 1))
        reads: list[float] = []

        def read_pss(now: float, stats: dict[int, procview.ProcStat]) -> int:
            reads.append(now)
            sampler._pss_cost, sampler._pss_at, sampler._base = cost, now, stats
            return limit // 2

        monkeypatch.setattr(sampler, "_read_pss", read_pss)
        checks = 500  # one second of checks 2 ms apart, on a simulated clock
        for n in range(checks):
            used, _ = sampler.measure(n * sampler_module.NEAR_CHECK_S)
            assert used <= limit
        sampler.stop()
        share = len(reads) * cost / (checks * sampler_module.NEAR_CHECK_S)
        # confirmed at once the first time, then within PSS_MAX_SHARE (it was every check)
        assert reads[0] == 0.0
        assert 0.8 * sampler_module.PSS_MAX_SHARE <= share <= sampler_module.PSS_MAX_SHARE + 0.01
