"""`snapshot --pid` and `leaks --pid` on real running services (tests/attach_service.py).

Each service is an HTTP server on 127.0.0.1 that keeps answering while its state grows: the
leaky variant keeps every record in the module global SEEN, the fixed one the last 100.
memdiag gets in through gdb, or through the cooperative agent's socket with no gdb on PATH.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from tests.conftest import memdiag

SERVICE = Path(__file__).with_name("attach_service.py")


class Service:
    """A running attach_service.py; stopped by its pid."""

    def __init__(
        self, tmp_path: Path, variant: str, *flags: str, python: str = sys.executable
    ) -> None:
        port_file = tmp_path / f"port-{variant}"
        self.proc = subprocess.Popen(
            [python, str(SERVICE), str(port_file), variant, *flags],
            stderr=open(tmp_path / f"stderr-{variant}", "w"),  # noqa: SIM115
        )
        deadline = time.monotonic() + 20
        while not port_file.exists():
            assert self.proc.poll() is None and time.monotonic() < deadline, "no service"
            time.sleep(0.05)
        self.port = int(port_file.read_text())
        self.pid = self.proc.pid

    def get(self, path: str) -> bytes:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=10) as r:
            data: bytes = r.read()
            return data

    def state(self) -> dict[str, object]:
        state: dict[str, object] = json.loads(self.get("/state"))
        return state

    def rss_bytes(self) -> int:
        with open(f"/proc/{self.pid}/statm") as handle:
            return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait()


@pytest.fixture
def services(tmp_path: Path) -> Iterator[list[Service]]:
    started: list[Service] = []
    yield started
    for service in started:
        service.stop()


def agent_threads(pid: int) -> list[str]:
    """The threads of `pid` that memdiag's loader named (`/proc/PID/task/TID/comm`)."""
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            if (task / "comm").read_text().startswith("memdiag-agent"):
                found.append(task.name)
        except OSError:
            pass  # a thread that has just ended
    return found


def assert_left_clean(service: Service) -> None:
    """No memdiag thread or module in the service after memdiag detached; tracemalloc off."""
    assert agent_threads(service.pid) == []
    state = service.state()
    assert not [t for t in state["threads"] if "memdiag" in t], state  # type: ignore[attr-defined]
    assert state["memdiag_modules"] == [], state
    assert state["tracing"] is False


def assert_refused_and_untouched(service: Service, proc: subprocess.CompletedProcess[str]) -> None:
    """memdiag said in one line that gdb cannot call functions here, and went nowhere:
    `snapshot` still gives the /proc view (exit 0), `leaks` stops there (exit 2)."""
    snapshot = proc.args[3] == "snapshot"
    assert proc.returncode == (0 if snapshot else 2), proc.stdout + proc.stderr
    assert "gdb cannot call functions" in proc.stderr and "was left alone" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    if snapshot:
        assert "the /proc view only" in proc.stderr and "RSS" in proc.stdout
    assert service.proc.poll() is None and service.get("/work")
    assert_left_clean(service)


class Latency:
    """Requests sent to the service the whole time memdiag is in it: each must be answered."""

    def __init__(self, service: Service) -> None:
        self.service, self.times, self.failed = service, [], 0
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._loop, name="test-latency")

    def _loop(self) -> None:
        while not self.done.is_set():
            started = time.perf_counter()
            try:
                self.service.get("/work")
            except OSError:
                self.failed += 1
            self.times.append(time.perf_counter() - started)
            time.sleep(0.01)

    def __enter__(self) -> Latency:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.done.set()
        self.thread.join()


def test_snapshot_pid_names_the_growing_global_while_the_service_answers(
    tmp_path: Path, services: list[Service], gdb_broken: str | None
) -> None:
    service = Service(tmp_path, "leaky")
    services.append(service)
    time.sleep(1.0)
    out = tmp_path / "snap.json"
    with Latency(service) as latency:
        proc = memdiag("snapshot", "--pid", str(service.pid), "--inject", "--json", str(out))
    if gdb_broken:
        assert_refused_and_untouched(service, proc)
        assert latency.failed == 0 and json.loads(out.read_text())["attached"] is None
        return
    assert proc.returncode == 0, proc.stderr
    snap = json.loads(out.read_text())
    assert snap["owners"][0]["expression"] == "__main__.SEEN"
    assert snap["owners"][0]["type"] == "set"
    assert snap["owners"][0]["retained_objects"] > 1000
    assert snap["attached"]["via"] == "gdb"
    assert snap["attached"]["entered"] == "allocator"  # its threads allocate all the time
    assert snap["types"] and snap["gc_collections"] and snap["uss_bytes"] > 0
    assert "__main__.SEEN" in proc.stdout
    # Every request sent during the attach was answered; the slowest waited for the pause.
    assert latency.failed == 0 and len(latency.times) >= 3
    assert max(latency.times) < 10
    assert_left_clean(service)


# Allocates nothing while it waits in accept(): gdb finds no allocator's entry to stop at.
IDLE_SERVICE = """\
import socket, sys
server = socket.socket()
server.bind(("127.0.0.1", 0))
server.listen()
KEEP = [str(i) * 10 for i in range(50000)]
with open(sys.argv[1] + ".tmp", "w") as f:
    f.write(str(server.getsockname()[1]))
import os
os.replace(sys.argv[1] + ".tmp", sys.argv[1])
try:
    conn, _ = server.accept()
    conn.sendall(b"still serving")
except BaseException as error:
    print("interrupted:", repr(error), flush=True)
"""


def test_an_idle_process_is_entered_after_the_wait_and_serves_on(
    tmp_path: Path, gdb_broken: str | None
) -> None:
    (tmp_path / "idle.py").write_text(IDLE_SERVICE)
    port_file = tmp_path / "port"
    service = subprocess.Popen(
        [sys.executable, str(tmp_path / "idle.py"), str(port_file)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 20
        while not port_file.exists():
            assert service.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
        out = tmp_path / "snap.json"
        proc = memdiag("snapshot", "--pid", str(service.pid), "--inject", "--json", str(out))
        if gdb_broken:
            assert "gdb cannot call functions" in proc.stderr
        else:
            assert proc.returncode == 0, proc.stderr
            snap = json.loads(out.read_text())
            assert snap["attached"]["entered"] == "idle"
            assert snap["owners"][0]["expression"] == "__main__.KEEP"
        # Its accept() goes on where it was: no KeyboardInterrupt from gdb's interruption.
        port = int(port_file.read_text())
        with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
            assert conn.recv(100) == b"still serving"
        stdout, _ = service.communicate(timeout=10)
        assert service.returncode == 0 and "interrupted" not in stdout, stdout
    finally:
        service.kill()
        service.wait()


def test_snapshot_pid_trace_records_the_window_sites_and_stops_tracemalloc(
    tmp_path: Path, services: list[Service], gdb_broken: str | None
) -> None:
    service = Service(tmp_path, "fixed")
    services.append(service)
    time.sleep(1.0)
    # The first visit loads what later ones reuse (docs/leaks.md); a later one leaves < 2 MB.
    first = memdiag("snapshot", "--pid", str(service.pid), "--inject")
    if gdb_broken:
        return assert_refused_and_untouched(service, first)
    assert first.returncode == 0, first.stderr
    before = service.rss_bytes()
    out = tmp_path / "snap.json"
    args = ("snapshot", "--pid", str(service.pid), "--inject", "--trace", "1")
    proc = memdiag(*args, "--json", str(out))
    assert proc.returncode == 0, proc.stderr
    sites = json.loads(out.read_text())["sites"]
    # The fixed variant keeps its last 100 records: allocated in the window, still live.
    assert any(s["traceback"][-1][0] == str(SERVICE) for s in sites), sites[:3]
    assert_left_clean(service)
    assert service.rss_bytes() - before < 2 * 1024 * 1024


def test_leaks_pid_finds_the_leaky_service_and_its_owner(
    tmp_path: Path, services: list[Service], gdb_broken: str | None
) -> None:
    service = Service(tmp_path, "leaky")
    services.append(service)
    out = tmp_path / "leaks.json"
    args = ("leaks", "--pid", str(service.pid), "--inject", "--every", "1")
    args = (*args, "--iterations", "5")
    proc = memdiag(*args, "--json", str(out))
    if gdb_broken:
        return assert_refused_and_untouched(service, proc)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    report = json.loads(out.read_text())
    assert report["owners"][0]["expression"] == "__main__.SEEN"
    assert report["owners"][0]["share"] > 0.5
    assert any(t["name"] == "str" for t in report["types"])
    assert_left_clean(service)


# Interpreters other than memdiag's own to go into: CPython 3.13 (through gdb) and 3.14
# (through sys.remote_exec, called by the target's own interpreter: no debugger).
OTHER_PYTHONS = [p for p in os.environ.get("MEMDIAG_TEST_PYTHONS", "").split(":") if p]


@pytest.mark.pythons
@pytest.mark.parametrize("python", OTHER_PYTHONS or ["none"])
def test_services_on_other_pythons_are_entered_and_their_leak_named(
    python: str, tmp_path: Path, services: list[Service], gdb_broken: str | None
) -> None:
    version = subprocess.run(
        [python, "-I", "-S", "-c", "import sys; print(sys.version_info[:2] >= (3, 14))"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    remote_exec = version == "True"
    service = Service(tmp_path, "leaky", python=python)
    services.append(service)
    time.sleep(1.0)
    flags = () if remote_exec else ("--inject",)
    out = tmp_path / "snap.json"
    proc = memdiag("snapshot", "--pid", str(service.pid), *flags, "--json", str(out))
    if gdb_broken and not remote_exec:
        return assert_refused_and_untouched(service, proc)
    assert proc.returncode == 0, proc.stderr
    snap = json.loads(out.read_text())
    assert snap["owners"][0]["expression"] == "__main__.SEEN"
    via = "sys.remote_exec, called by its own interpreter" if remote_exec else "gdb"
    assert snap["attached"]["via"] == via
    assert_left_clean(service)
    leaks = tmp_path / "leaks.json"
    args = ("leaks", "--pid", str(service.pid), *flags, "--every", "1", "--iterations", "5")
    proc = memdiag(*args, "--json", str(leaks))
    assert proc.returncode == 1, proc.stdout + proc.stderr
    report = json.loads(leaks.read_text())
    assert report["owners"][0]["expression"] == "__main__.SEEN"
    site = next(
        s
        for s in report["sites"]
        if s["site"].startswith(f"{SERVICE.name}:") or f"/{SERVICE.name}:" in s["site"]
    )
    assert site["objects_per_iteration"] > 100  # the strings it keeps, counted
    assert_left_clean(service)


def test_leaks_pid_reports_no_leak_for_the_fixed_service_three_times(
    tmp_path: Path, services: list[Service], gdb_broken: str | None
) -> None:
    service = Service(tmp_path, "fixed")
    services.append(service)
    for _ in range(3):
        args = ("leaks", "--pid", str(service.pid), "--inject", "--every", "1")
        args = (*args, "--iterations", "5")
        proc = memdiag(*args)
        if gdb_broken:
            return assert_refused_and_untouched(service, proc)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert "no leak" in proc.stdout.lower()
    assert_left_clean(service)


def test_the_cooperative_agent_answers_without_gdb(tmp_path: Path, services: list[Service]) -> None:
    service = Service(tmp_path, "leaky", "agent")
    services.append(service)
    time.sleep(0.5)
    out = tmp_path / "snap.json"
    env = {**os.environ, "PATH": str(tmp_path)}  # no gdb anywhere on it
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "memdiag",
            "snapshot",
            "--pid",
            str(service.pid),
            "--json",
            str(out),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    snap = json.loads(out.read_text())
    assert snap["attached"]["via"] == "agent socket"
    assert snap["owners"][0]["expression"] == "__main__.SEEN"
    state = service.state()
    assert agent_threads(service.pid) == []  # the answering thread ended
    assert state["tracing"] is False


def test_without_gdb_memdiag_says_how_to_install_it(
    tmp_path: Path, services: list[Service]
) -> None:
    service = Service(tmp_path, "fixed")
    services.append(service)
    proc = subprocess.run(
        [sys.executable, "-m", "memdiag", "snapshot", "--pid", str(service.pid), "--inject"],
        capture_output=True,
        text=True,
        env={**os.environ, "PATH": str(tmp_path)},
        timeout=60,
    )
    assert proc.returncode == 2
    assert "install gdb" in proc.stderr and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_without_inject_a_service_with_no_agent_is_left_alone(
    tmp_path: Path, services: list[Service]
) -> None:
    service = Service(tmp_path, "leaky")
    services.append(service)
    proc = memdiag("snapshot", "--pid", str(service.pid))
    assert proc.returncode == 0 and "resident by region" in proc.stdout  # the /proc view
    assert "add --inject" in proc.stderr
    args = ("leaks", "--pid", str(service.pid), "--every", "1", "--iterations", "5")
    proc = memdiag(*args)
    assert proc.returncode == 2 and "add --inject" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr
    state = service.state()
    assert state["memdiag_modules"] == [] and agent_threads(service.pid) == []


def test_bad_pids_are_one_line_and_exit_2(tmp_path: Path) -> None:
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    for args in (("snapshot", "--pid", str(gone.pid)), ("leaks", "--pid", str(gone.pid))):
        proc = memdiag(*args, "--every", "1") if args[0] == "leaks" else memdiag(*args)
        assert proc.returncode == 2, proc.stderr
        assert f"no process with pid {gone.pid}" in proc.stderr
        assert "Traceback" not in proc.stderr
    sleeper = subprocess.Popen(["sleep", "30"])
    try:
        proc = memdiag("leaks", "--pid", str(sleeper.pid), "--every", "1")
        assert proc.returncode == 2
        assert "is not a CPython process" in proc.stderr and "Traceback" not in proc.stderr
        proc = memdiag("snapshot", "--pid", str(sleeper.pid))  # not Python: the /proc view
        assert proc.returncode == 0 and "resident by region" in proc.stdout
    finally:
        sleeper.kill()
        sleeper.wait()


EXITS_ON_ATTACH = """
import os, time
def agent_started():
    for task in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{task}/comm") as comm:
                if comm.read().startswith("memdiag-agent"):
                    return True
        except OSError:
            pass
    return False
while not agent_started():
    time.sleep(0.005)
os._exit(0)
"""


def test_a_process_that_exits_during_the_attach_is_one_line_and_exit_2(
    tmp_path: Path, gdb_broken: str | None
) -> None:
    target = subprocess.Popen([sys.executable, "-c", EXITS_ON_ATTACH])
    try:
        time.sleep(0.5)
        proc = memdiag("snapshot", "--pid", str(target.pid), "--inject")
        assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
        if gdb_broken:  # refused before gdb went near it: it is still running
            assert proc.returncode == 0 and "was left alone" in proc.stderr
            assert target.poll() is None
            return
        assert proc.returncode == 2, proc.stdout + proc.stderr
        assert f"process {target.pid} exited during the attach" in proc.stderr
    finally:
        target.kill()
        target.wait()


def test_serve_agent_starts_the_command_with_the_agent(tmp_path: Path) -> None:
    """`memdiag serve --agent -- CMD`: the service never calls memdiag.agent.install(), yet
    snapshot --pid gets in through the agent's socket with no gdb on PATH, and the service's
    own sitecustomize still runs."""
    (tmp_path / "own").mkdir()
    (tmp_path / "own" / "sitecustomize.py").write_text("import os\nos.environ['OWN_SITE'] = '1'\n")
    port_file = tmp_path / "port"
    env = {**os.environ, "PYTHONPATH": str(tmp_path / "own")}
    serve = subprocess.Popen(
        [sys.executable, "-m", "memdiag", "serve", "--agent", "--port", "0", "--",
         sys.executable, str(SERVICE), str(port_file), "leaky"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 20
        while not port_file.exists():
            assert serve.poll() is None and time.monotonic() < deadline, serve.stderr
            time.sleep(0.05)
        service = psutil.Process(serve.pid).children()[0]
        time.sleep(0.5)
        out = tmp_path / "snap.json"
        proc = subprocess.run(
            [sys.executable, "-m", "memdiag", "snapshot", "--pid", str(service.pid),
             "--json", str(out)],
            capture_output=True, text=True, timeout=120,
            env={**os.environ, "PATH": str(tmp_path)},  # no gdb anywhere on it
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        snap = json.loads(out.read_text())
        assert snap["attached"]["via"] == "agent socket"
        assert snap["owners"][0]["expression"] == "__main__.SEEN"
        port = int(port_file.read_text())
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/state", timeout=10) as answer:
            state = json.loads(answer.read())
        assert "memdiag-agent-socket" in state["threads"]
        assert state["own_site"] == "1"  # the sitecustomize the agent's shadows ran too
    finally:
        serve.terminate()
        serve.wait(timeout=30)


def test_serve_agent_without_a_command_is_one_line_and_exit_2() -> None:
    proc = memdiag("serve", "--agent", "--pid", str(os.getpid()))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines() == [
        "memdiag: error: --agent starts a command with the agent: give it after -- (a running "
        "service can call memdiag.agent.install() itself)"
    ]


# A quiet service with the agent: 200,000 strings held, asleep between 50 ms ticks; SIGUSR1
# writes its RSS and the modules loaded since the agent's install to REPORT.
QUIET = """\
import json, os, signal, sys, time
sys.path.insert(0, sys.argv[1])
if sys.argv[3] == "agent":
    import memdiag.agent
    memdiag.agent.install()
data = [str(i) * 5 for i in range(200_000)]
before = set(sys.modules)
def report(*_):
    rss = int(open('/proc/self/statm').read().split()[1]) * os.sysconf('SC_PAGE_SIZE')
    with open(sys.argv[2] + '.tmp', 'w') as out:
        json.dump({'rss': rss, 'modules': sorted(set(sys.modules) - before)}, out)
    os.replace(sys.argv[2] + '.tmp', sys.argv[2])
signal.signal(signal.SIGUSR1, report)
print('ready', flush=True)
while True:
    time.sleep(0.05)
"""


@pytest.mark.parametrize("way", ["agent", "gdb"])
def test_a_first_visit_leaves_little_behind(
    tmp_path: Path, way: str, gdb_broken: str | None
) -> None:
    """The work of a visit that needs more than the standard library's light modules (the
    model, dataclasses, inspect) runs in the forked copy: the service keeps under 2.5 MB of
    it (about 1.7 MB measured: tracemalloc, ctypes and traceback stay loaded), whether the
    agent's socket or gdb got memdiag in."""
    root = str(Path(__file__).resolve().parent.parent)
    report = tmp_path / "report.json"
    (tmp_path / "quiet.py").write_text(QUIET)
    proc = subprocess.Popen(
        [sys.executable, str(tmp_path / "quiet.py"), root, str(report), way],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"

        def state() -> dict[str, Any]:
            report.unlink(missing_ok=True)
            proc.send_signal(signal.SIGUSR1)
            deadline = time.monotonic() + 10
            while not report.exists():
                assert time.monotonic() < deadline, "the service did not report"
                time.sleep(0.02)
            data: dict[str, Any] = json.loads(report.read_text())
            return data

        before = state()
        inject = ("--inject",) if way == "gdb" else ()
        out = tmp_path / "s.json"
        done = memdiag("snapshot", "--pid", str(proc.pid), *inject, "--json", str(out))
        assert done.returncode == 0, done.stderr
        if inject and gdb_broken:  # refused before gdb went near it (see the tests above)
            assert "gdb cannot call functions" in done.stderr
            return
        assert json.loads(out.read_text())["attached"]["via"] == {"agent": "agent socket"}.get(
            way, way
        )
        after = state()
        assert after["rss"] - before["rss"] < 2.5 * 2**20, (after["rss"] - before["rss"]) / 2**20
        assert not [m for m in after["modules"] if m.startswith("memdiag")]
        assert not {"dataclasses", "inspect", "ast"} & set(after["modules"]), after["modules"]
    finally:
        proc.kill()
        proc.wait()
