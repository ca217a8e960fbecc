"""`memdiag sweep --cluster`: the real CLI against a real scheduler and two workers on 127.0.0.1.

The cluster is `dask scheduler` and `dask worker` processes started here with bounded waits
and stopped by their own pids; dask is a dev dependency, so these never skip.
"""

from __future__ import annotations

import json
import os
import signal
import statistics
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import pytest

from tests.conftest import load_results, memdiag

DASK = [sys.executable, "-m", "distributed.cli.dask_worker"]
START_TIMEOUT_S = 90

# Peak ≈ interpreter + batch MB. Each run notes its pid and what it saw of the environment.
JOB = """
import json, os, time

def run(batch: int = 1, pause: float = 0.2, notes: str = "", gate: str = "") -> int:
    while batch > 2 and gate and os.path.exists(gate):  # held until the gate file goes
        time.sleep(0.05)
    if notes:
        with open(os.path.join(notes, f"{os.getpid()}.json"), "w") as handle:
            json.dump({"malloc": os.environ.get("MALLOC_TRIM_THRESHOLD_"),
                       "omp": os.environ.get("OMP_NUM_THREADS"), "batch": batch}, handle)
    block = b"\\x01" * (batch * 1024 * 1024)
    time.sleep(pause)
    return batch
"""


@dataclass
class Cluster:
    address: str
    procs: list[subprocess.Popen[bytes]]
    folder: Path

    def worker_processes(self) -> list[psutil.Process]:
        """The dask worker processes (the nannies' children) that run the tasks."""
        return [c for p in self.procs[1:] for c in psutil.Process(p.pid).children()]


def _start_cluster(folder: Path, workers: int, env: dict[str, str]) -> Cluster:
    """Start a scheduler and `workers` workers; on any failure stop what started, by pid."""
    cluster = Cluster("", [], folder)
    try:
        _start_processes(cluster, workers, env)
    except BaseException:
        _stop_cluster(cluster)
        raise
    return cluster


def _start_processes(cluster: Cluster, workers: int, env: dict[str, str]) -> None:
    scheduler_file = cluster.folder / "scheduler.json"
    scheduler = subprocess.Popen(
        [sys.executable, "-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.1",
         "--port", "0", "--no-dashboard", "--scheduler-file", str(scheduler_file)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    cluster.procs.append(scheduler)
    deadline = time.monotonic() + START_TIMEOUT_S
    while not scheduler_file.exists():
        assert time.monotonic() < deadline and scheduler.poll() is None, "no scheduler"
        time.sleep(0.1)
    cluster.address = json.loads(scheduler_file.read_text())["address"]
    worker = [*DASK, cluster.address, "--nthreads", "1", "--resources", "memdiag=1"]
    worker += ["--memory-limit", "0", "--no-dashboard"]
    for n in range(workers):
        (cluster.folder / f"w{n}").mkdir()  # each worker its own working directory
        proc = subprocess.Popen(
            [*worker, "--name", f"w{n}"],
            env=env,
            cwd=cluster.folder / f"w{n}",
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        cluster.procs.append(proc)
    while len(cluster.worker_processes()) < workers or not _registered(cluster, workers):
        assert time.monotonic() < deadline, "workers did not start"
        time.sleep(0.2)


def _registered(cluster: Cluster, workers: int) -> bool:
    from distributed import Client

    with Client(cluster.address, timeout=10) as client:
        return len(client.scheduler_info()["workers"]) >= workers


def _stop_cluster(cluster: Cluster) -> None:
    """Stop the scheduler and the workers by pid, and the workers' children (a nanny's
    worker process) should a nanny die first."""
    children = []
    for proc in cluster.procs:
        try:
            children += psutil.Process(proc.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            pass
    for proc in reversed(cluster.procs):
        proc.terminate()
    for proc in cluster.procs:
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    for child in children:
        try:
            child.kill()
        except psutil.NoSuchProcess:
            pass


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    started = _start_cluster(tmp_path_factory.mktemp("cluster"), 2, dict(os.environ))
    try:
        yield started
    finally:
        _stop_cluster(started)


@pytest.fixture
def fragile_cluster(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Cluster]:
    """A cluster of its own, for a test that kills its workers; `allowed` failures per task."""
    env = {**os.environ, "DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES": str(request.param)}
    folder = tmp_path / "cluster"
    folder.mkdir()
    started = _start_cluster(folder, 2, env)
    try:
        yield started
    finally:
        _stop_cluster(started)


@pytest.fixture
def job(tmp_path: Path) -> str:
    path = tmp_path / "job.py"
    path.write_text(JOB)
    return f"{path}:run"


def medians(data: dict[str, Any]) -> dict[int, float]:
    peaks: dict[int, list[int]] = {}
    for run in data["runs"]:
        peaks.setdefault(run["params"]["batch"], []).append(run["peak_rss_bytes"])
    return {batch: statistics.median(values) for batch, values in peaks.items()}


def test_cluster_sweep_matches_a_local_one(job: str, cluster: Cluster, tmp_path: Path) -> None:
    notes = tmp_path / "notes"
    notes.mkdir()
    args = ["sweep", job, "--batch", "20,80", "--repeat", "2", "--param", f"notes={notes}"]
    local = memdiag(*args, "--out", str(tmp_path / "local"), "--quiet")
    assert local.returncode == 0, local.stderr
    remote = memdiag(*args, "--cluster", cluster.address, "--out", str(tmp_path / "c"), "--quiet")
    assert remote.returncode == 0, remote.stderr
    here, there = load_results(tmp_path / "local"), load_results(tmp_path / "c")
    assert [c["params"] for c in there["configs"]] == [c["params"] for c in here["configs"]]
    assert all(r["status"] == "ok" for r in there["runs"]) and len(there["runs"]) == 4
    for batch, peak in medians(here).items():
        assert abs(medians(there)[batch] - peak) <= 0.02 * peak, (batch, peak, medians(there))
    assert medians(there)[80] - medians(there)[20] > 50 * 1024 * 1024  # really measured
    assert there["cluster"] == cluster.address
    assert {r["env"]["host"]["name"] for r in there["runs"]} == {os.uname().nodename}
    # every run left a note; the cluster's jobs saw no nanny settings (the local ones neither)
    seen = [json.loads(p.read_text()) for p in notes.iterdir()]
    assert len(seen) == 8
    assert all(s["malloc"] is None and s["omp"] is None for s in seen), seen
    assert "Hosts" in (tmp_path / "c" / "report.md").read_text()


def test_environment_variable_names_the_cluster(job: str, cluster: Cluster, tmp_path: Path) -> None:
    out = tmp_path / "out"
    env = {**os.environ, "MEMDIAG_CLUSTER": cluster.address}
    result = subprocess.run(
        [sys.executable, "-m", "memdiag", "sweep", job, "--batch", "5,6", "--repeat", "1",
         "--out", str(out), "--quiet"],
        env=env, capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert load_results(out)["cluster"] == cluster.address


def test_a_job_out_of_memory_is_a_result_run_once(
    job: str, cluster: Cluster, tmp_path: Path
) -> None:
    notes = tmp_path / "notes"
    notes.mkdir()
    out = tmp_path / "out"
    result = memdiag("sweep", job, "--batch", "4,300", "--repeat", "1", "--limit", "150MB",
                     "--param", f"notes={notes}", "--cluster", cluster.address,
                     "--out", str(out), "--quiet")  # fmt: skip
    assert result.returncode == 0, result.stderr
    statuses = {r["params"]["batch"]: r["status"] for r in load_results(out)["runs"]}
    assert statuses == {4: "ok", 300: "oom"}
    assert len(list(notes.iterdir())) == 2  # each job started once: nothing retried


@pytest.fixture
def start_sweep() -> Iterator[Any]:
    """Start `memdiag ARGS` in the background; whatever a failed test left is killed."""
    started: list[subprocess.Popen[str]] = []

    def start(args: list[str]) -> subprocess.Popen[str]:
        proc = subprocess.Popen(
            [sys.executable, "-m", "memdiag", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        started.append(proc)
        return proc

    yield start
    for proc in started:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()


def _wait_for(what: Any, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not what():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.05)


@pytest.mark.parametrize("how", [signal.SIGINT, signal.SIGKILL])
def test_ctrl_c_leaves_no_job_on_any_worker(
    job: str, cluster: Cluster, tmp_path: Path, how: signal.Signals, start_sweep: Any
) -> None:
    """Ctrl-C stops the jobs before memdiag exits; a memdiag killed outright has its tasks
    released by the scheduler, and the workers stop their jobs then."""
    notes = tmp_path / "notes"
    notes.mkdir()
    out = tmp_path / "out"
    # jobs far longer than the test: only a stop can end them in time
    args = ["sweep", job, "--batch", "1,2,3,4,5,6", "--param", "pause=600", "--repeat", "1"]
    proc = start_sweep([*args, "--param", f"notes={notes}", "--cluster", cluster.address,
                         "--out", str(out), "--quiet"])  # fmt: skip
    _wait_for(lambda: len(list(notes.iterdir())) >= 2)  # one job running on each worker
    jobs = [int(p.stem) for p in notes.iterdir()]
    assert all(psutil.pid_exists(pid) for pid in jobs)
    proc.send_signal(how)
    _, stderr = proc.communicate(timeout=60)
    if how == signal.SIGINT:
        assert proc.returncode == 130, stderr
        assert "--resume" in stderr and "Traceback" not in stderr
    if how == signal.SIGINT:  # memdiag waited for them: gone before it exited
        assert not any(_alive(pid) for pid in jobs)
    else:  # gone once the scheduler notices memdiag is, and releases their tasks
        _wait_for(lambda: not any(_alive(pid) for pid in jobs), timeout=30)
    for worker in cluster.worker_processes():
        assert worker.children() == [], [c.cmdline() for c in worker.children()]
    assert len(list(notes.iterdir())) == 2  # the pending runs were cancelled, not started


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_resume_after_an_interrupted_cluster_sweep_runs_only_what_is_missing(
    job: str, cluster: Cluster, tmp_path: Path, start_sweep: Any
) -> None:
    out = tmp_path / "out"
    gate = tmp_path / "gate"
    gate.touch()  # batches above 2 wait for it to go: the first two runs are all that end
    args = ["sweep", job, "--batch", "1,2,3,4,5,6,7,8", "--param", f"gate={gate}"]
    args += ["--repeat", "1", "--cluster", cluster.address, "--out", str(out), "--quiet"]
    proc = start_sweep(args)
    # saved as they stream back, while the other runs are still out on the workers
    _wait_for(lambda: (out / "results.json").exists() and len(load_results(out)["runs"]) == 2)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    assert sorted(r["params"]["batch"] for r in load_results(out)["runs"]) == [1, 2]
    gate.unlink()
    resumed = memdiag(*args, "--resume")
    assert resumed.returncode == 0, resumed.stderr
    runs = load_results(out)["runs"]
    assert Counter(r["params"]["batch"] for r in runs) == Counter(range(1, 9))
    assert sorted(r["params"]["batch"] for r in runs[:2]) == [1, 2]


def _kill_worker_of(note: Path, cluster: Cluster) -> psutil.Process:
    """Kill the worker whose job wrote `note`; return the job's process."""
    victim = psutil.Process(int(note.stem))
    launcher = victim.parent()
    assert launcher is not None
    worker = launcher.parent()
    assert worker is not None and worker in cluster.worker_processes()
    worker.kill()
    return victim


@pytest.mark.parametrize(
    ("fragile_cluster", "kills"), [(3, 1), (0, 2)], indirect=["fragile_cluster"]
)
def test_a_worker_killed_mid_run(
    job: str, fragile_cluster: Cluster, tmp_path: Path, kills: int, start_sweep: Any
) -> None:
    """Rescheduled by dask within its allowed failures. Past them (none allowed here),
    memdiag submits the run once more; a second loss is recorded as worker lost, in
    `infrastructure`: not the job's failure."""
    notes = tmp_path / "notes"
    notes.mkdir()
    out = tmp_path / "out"
    args = ["sweep", job, "--batch", "1,2,3", "--param", "pause=3", "--repeat", "1"]
    proc = start_sweep([*args, "--param", f"notes={notes}", "--cluster",
                         fragile_cluster.address, "--out", str(out), "--quiet"])  # fmt: skip
    _wait_for(lambda: len(list(notes.iterdir())) >= 1)
    first = next(notes.iterdir())
    batch = json.loads(first.read_text())["batch"]
    victims = [_kill_worker_of(first, fragile_cluster)]
    if kills == 2:

        def retried() -> list[Path]:
            return [
                n for n in notes.iterdir()
                if n != first and n.stat().st_size and json.loads(n.read_text())["batch"] == batch
            ]  # fmt: skip

        _wait_for(lambda: bool(retried()))  # memdiag's retry of the same run
        victims.append(_kill_worker_of(retried()[0], fragile_cluster))
    _, stderr = proc.communicate(timeout=150)
    assert proc.returncode == 0, stderr
    runs = load_results(out)["runs"]
    assert sorted(r["params"]["batch"] for r in runs) == [1, 2, 3]
    statuses = sorted(r["status"] for r in runs)
    assert statuses == (["ok"] * 3 if kills == 1 else ["error", "ok", "ok"]), runs
    if kills == 2:
        lost = next(r for r in runs if r["status"] == "error")
        assert lost["params"]["batch"] == batch
        assert lost["infrastructure"].startswith("worker lost")
        assert lost["error"]["message"] == lost["infrastructure"]
    assert all(r["infrastructure"] is None for r in runs if r["status"] == "ok")
    # the launchers stopped the jobs when their workers went (the lifeline broke)
    _wait_for(lambda: not any(_alive(v.pid) for v in victims), timeout=10)


def test_memdiag_failing_on_a_worker_is_retried_then_reported(cluster: Cluster) -> None:
    """An exception in memdiag's own task code (here: a bad environment for the launcher)
    is no verdict about the job: the run is tried twice, then recorded as memdiag's."""
    from distributed import get_task_stream

    from memdiag.measure.process.runner import RunOptions
    from memdiag.measure.sweep.cluster import ClusterExecutor, parse_cluster
    from memdiag.model import Run
    from memdiag.targets import parse_target

    target = parse_target(None, ("true",))
    finished: list[Run] = []

    class Listener:
        def started(self, params: dict[str, Any]) -> None:
            pass

        def finished(self, run: Run) -> None:
            finished.append(run)

    broken = RunOptions(env={"NOT_A_STRING": 1})  # type: ignore[dict-item]
    with ClusterExecutor(parse_cluster(cluster.address), target) as executor:
        assert executor.client is not None
        with get_task_stream(executor.client) as stream:
            executor(target, [{"batch": 1}], broken, Listener())
    (run,) = finished
    assert run.status == "error" and run.infrastructure is not None
    assert run.infrastructure.startswith("memdiag failed on the worker: TypeError")
    keys = {t["key"] for t in stream.data if str(t["key"]).startswith("memdiag-run-")}
    assert len(keys) == 2  # the first attempt and one retry


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.mark.parametrize("address", ["tcp://nohost", "local:0", "http://127.0.0.1:8786", "x:y"])
def test_a_malformed_address_is_one_line(job: str, address: str, tmp_path: Path) -> None:
    result = memdiag("sweep", job, "--batch", "1,2", "--cluster", address, timeout=30)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "--cluster" in result.stderr, result.stderr
    assert "not a scheduler address" in result.stderr or "local:N" in result.stderr


def test_an_unreachable_scheduler_is_one_line(job: str, tmp_path: Path) -> None:
    address = f"tcp://127.0.0.1:{_free_port()}"
    result = memdiag("sweep", job, "--batch", "1,2", "--cluster", address,
                     "--out", str(tmp_path / "out"), timeout=60)  # fmt: skip
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "cannot reach" in result.stderr, result.stderr
    assert "within 10 s" in result.stderr  # its own connect timeout gave up, not the test's
    assert not (tmp_path / "out" / "results.json").exists()


def _worker_addresses(cluster: Cluster) -> dict[str, str]:
    from distributed import Client

    with Client(cluster.address, timeout=10) as client:
        workers = client.scheduler_info()["workers"]
    return {str(w["name"]): address for address, w in workers.items()}


@pytest.mark.parametrize("kind", ["module", "command"])
def test_a_worker_without_the_target_is_one_line(
    kind: str, cluster: Cluster, tmp_path: Path
) -> None:
    """The target resolves where memdiag runs (its cwd, its PATH) but not on a worker: the
    module is in worker w0's working directory only, the command on no worker's PATH."""
    notes = tmp_path / "notes"
    notes.mkdir()
    (tmp_path / "only_here.py").write_text(JOB)
    (cluster.folder / "w0" / "only_here.py").write_text(JOB)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "only-here").write_text(f"#!/bin/sh\ntouch {notes}/$$\n")
    (bin_dir / "only-here").chmod(0o755)
    target = ["only_here:run"] if kind == "module" else ["--", "only-here", "{notes}"]
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    try:
        result = subprocess.run(
            [sys.executable, "-m", "memdiag", "sweep", "--batch", "1,2", "--param",
             f"notes={notes}", "--cluster", cluster.address, "--out", str(tmp_path / "out"),
             *target],
            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
    finally:
        (cluster.folder / "w0" / "only_here.py").unlink()
    assert result.returncode == 2, result.stderr
    assert result.stderr.count("\n") == 1, result.stderr
    workers = _worker_addresses(cluster)
    lacking = workers["w1"] if kind == "module" else min(workers.values())
    assert f"worker {lacking}: " in result.stderr
    reason = "no module named 'only_here'" if kind == "module" else "'only-here' is not on PATH"
    assert f"cannot run there: {reason}" in result.stderr
    # checked before the first run: no job ran anywhere, nothing was saved
    assert list(notes.iterdir()) == []
    assert not (tmp_path / "out" / "results.json").exists()


def test_local_workers_and_no_dask_without_cluster(job: str, tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = memdiag("sweep", job, "--batch", "5,6", "--repeat", "1", "--cluster", "local:2",
                     "--out", str(out), "--quiet")  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert [r["status"] for r in load_results(out)["runs"]] == ["ok", "ok"]
    assert load_results(out)["cluster"] == "local:2"
    # without --cluster nothing imports dask: not the CLI, the sweep, nor the cluster modules
    code = (
        "import sys, memdiag.cli, memdiag.cli.sweep, memdiag.measure.sweep.grid, "
        "memdiag.measure.sweep.cluster, memdiag.measure.sweep.worker; "
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'dask', 'distributed'}))"
    )
    assert subprocess.check_output([sys.executable, "-c", code], text=True).strip() == "[]"


def test_ctrl_c_on_local_workers_stops_their_jobs_quietly(job: str, tmp_path: Path) -> None:
    """Ctrl-C reaches memdiag's whole process group, its local workers included."""
    notes = tmp_path / "notes"
    notes.mkdir()
    args = ["sweep", job, "--batch", "1,2,3", "--param", "pause=600", "--repeat", "1"]
    args += ["--param", f"notes={notes}", "--cluster", "local:2", "--out", str(tmp_path / "o")]
    proc = subprocess.Popen(
        [sys.executable, "-m", "memdiag", *args],
        start_new_session=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        _wait_for(lambda: len(list(notes.iterdir())) >= 2)
        jobs = [int(p.stem) for p in notes.iterdir()]
        os.killpg(proc.pid, signal.SIGINT)
        _, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr and stderr.strip().splitlines()[-1].count("interrupted")
    assert not any(_alive(pid) for pid in jobs)  # memdiag waited for them before it exited
