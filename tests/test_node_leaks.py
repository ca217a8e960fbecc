"""`memdiag leaks` of Node.js processes: V8 heap snapshots through one inspector session.

Real node processes written here: a service whose Set of keys grows every tick (and its fixed
variant), a listener leak on a global emitter, a batch job whose errors array grows.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from memdiag.measure.node.inspector import listening_ports
from tests.conftest import memdiag

NODE = shutil.which("node") or "node"

# 200 keys a tick into service.processedRecords; argv[2] > 0 clears it every argv[2] ticks.
SET_SERVICE = """\
const service = { processedRecords: new Set(), name: 'sync' };
const clearEvery = Number(process.argv[2] || 0);
let n = 0, ticks = 0;
setInterval(() => {
  for (let i = 0; i < 200; i++) service.processedRecords.add('record-key-' + n++);
  if (clearEvery && ++ticks % clearEvery === 0) service.processedRecords.clear();
}, 20);
console.log('ready');
"""

# Per batch a handler closing over the batch is pushed onto a global emitter's array.
LISTENERS = """\
globalThis.EVENT_BUS = { _handlers: { progress: [] } };
let batchNo = 0;
function processBatch() {
  const batch = Array.from({ length: 400 }, (_, i) => ({ row: batchNo * 400 + i }));
  EVENT_BUS._handlers.progress.push(function onProgress() {
    return batch.length;
  });
  batchNo++;
}
setInterval(processBatch, 20);
console.log('ready');
"""
LISTENER_LINE = 5  # the line of `function onProgress` above

# A batch job whose failed rows pile up in stats.errors.
JOB = """\
const stats = { errors: [], done: 0 };
function batch() {
  for (let i = 0; i < 300; i++) {
    stats.done++;
    if (i % 2) continue;
    stats.errors.push({ id: stats.done, message: 'row ' + stats.done + ' failed' });
  }
  setTimeout(batch, 20);
}
batch();
"""


def start(script: Path, *args: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [NODE, str(script), *args], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    return proc


@pytest.fixture
def scripts(tmp_path: Path) -> Path:
    for name, text in (("service.js", SET_SERVICE), ("listeners.js", LISTENERS), ("job.js", JOB)):
        (tmp_path / name).write_text(text)
    return tmp_path


@pytest.fixture
def stopped() -> Iterator[list[subprocess.Popen[str]]]:
    procs: list[subprocess.Popen[str]] = []
    yield procs
    for proc in procs:
        proc.kill()
        proc.wait()


def leaks_pid(pid: int, out: Path, *extra: str) -> tuple[subprocess.CompletedProcess[str], dict]:
    done = memdiag(
        "leaks", "--pid", str(pid), "--every", "0.5", "--iterations", "5",
        "--json", str(out), *extra,
    )  # fmt: skip
    data = json.loads(out.read_text()) if out.exists() else {}
    return done, data


def test_sessions_one_after_another_never_crash_the_service(
    scripts: Path, tmp_path: Path, stopped: list[subprocess.Popen[str]]
) -> None:
    # node 20 crashed (SIGSEGV in its inspector thread, WsHandler::OnCloseFrameWritten) after
    # about half of these sessions while their client closed the WebSocket politely.
    proc = start(scripts / "service.js")
    stopped.append(proc)
    for k in range(5):
        done = memdiag(
            "leaks", "--pid", str(proc.pid), "--every", "0.2", "--iterations", "5",
            "--json", str(tmp_path / f"{k}.json"),
        )  # fmt: skip
        assert done.returncode in (0, 1), done.stderr  # the verdict is not this test's
        time.sleep(0.5)
        assert proc.poll() is None, f"session {k}: the service ended ({proc.poll()})"
    assert listening_ports(proc.pid) == set()


def test_leaks_pid_names_the_growing_set_by_its_path(
    scripts: Path, tmp_path: Path, stopped: list[subprocess.Popen[str]]
) -> None:
    proc = start(scripts / "service.js")
    stopped.append(proc)
    done, report = leaks_pid(proc.pid, tmp_path / "leaks.json")
    assert done.returncode == 1, done.stderr
    assert report["heap_basis"] == "v8" and report["pid"] == proc.pid and report["found"]
    owner = report["owners"][0]
    assert (owner["expression"], owner["type"]) == ("service.processedRecords", "Set")
    heap = report["heap_bytes_per_iteration"]
    assert heap > 64 * 1024
    assert abs(owner["retained_bytes_per_iteration"] - heap) <= 0.1 * heap
    assert "string" in report["owners"][0]["path"][0]["type"]  # (string), (concatenated string)
    assert owner["expression"] in done.stdout
    # Every snapshot through one session, closed at the end: only node's own sockets remain.
    assert listening_ports(proc.pid) == set()
    assert proc.poll() is None
    # memdiag report re-renders the saved report.
    again = memdiag("report", str(tmp_path / "leaks.json"))
    assert again.returncode == 0, again.stderr
    assert owner["expression"] in again.stdout and "V8 heap" in again.stdout


def test_the_fixed_service_reports_no_leak_in_three_runs(
    scripts: Path, tmp_path: Path, stopped: list[subprocess.Popen[str]]
) -> None:
    proc = start(scripts / "service.js", "10")  # cleared every 10 ticks (200 ms)
    stopped.append(proc)
    for run in range(3):
        done, report = leaks_pid(proc.pid, tmp_path / f"fixed-{run}.json")
        assert done.returncode == 0, done.stdout + done.stderr
        assert not report["found"] and report["owners"] == []
        assert "no leaks" in done.stdout


# Starts a worker thread every 250 ms and keeps it: each has a V8 heap of its own, outside
# the main thread's heap snapshots.
WORKERS = """\
const { Worker } = require('worker_threads');
const kept = [];
setInterval(() => {
  kept.push(new Worker('setInterval(() => {}, 1000); const a = new Array(200000).fill(1);',
    { eval: true }));
}, 250);
console.log('ready');
"""


def test_workers_that_are_never_stopped_are_native_growth(
    tmp_path: Path, stopped: list[subprocess.Popen[str]]
) -> None:
    (tmp_path / "workers.js").write_text(WORKERS)
    proc = start(tmp_path / "workers.js")
    stopped.append(proc)
    done, report = leaks_pid(proc.pid, tmp_path / "workers.json")
    assert done.returncode == 1, done.stderr
    native = report["native"]
    assert native is not None, report
    # Two workers an interval, several MB of RSS each, while V8's own memory hardly moves.
    assert native["native_per_iteration"] >= 4 * 2**20, native
    assert native["heap_per_iteration"] < 0.1 * native["native_per_iteration"], native
    assert "beyond what V8 took" in done.stdout


def test_a_listener_leak_names_the_handler_closure_and_its_line(
    scripts: Path, tmp_path: Path, stopped: list[subprocess.Popen[str]]
) -> None:
    proc = start(scripts / "listeners.js")
    stopped.append(proc)
    done, report = leaks_pid(proc.pid, tmp_path / "listeners.json")
    assert done.returncode == 1, done.stderr
    owner = report["owners"][0]
    assert owner["expression"] == "EVENT_BUS._handlers.progress"
    assert owner["sample"].startswith("EVENT_BUS._handlers.progress[")
    assert f"onProgress listeners.js:{LISTENER_LINE}" in owner["closures"]
    assert owner["share"] >= 0.8


def test_leaks_every_on_a_node_job_names_stats_errors_and_keeps_no_file(
    scripts: Path, tmp_path: Path
) -> None:
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    done = subprocess.run(
        [sys.executable, "-m", "memdiag", "leaks", "--every", "0.5", "--iterations", "5",
         "--json", str(tmp_path / "job.json"), "--", NODE, str(scripts / "job.js")],
        capture_output=True, text=True, timeout=180, env={**os.environ, "TMPDIR": str(scratch)},
    )  # fmt: skip
    assert done.returncode == 1, done.stderr
    report = json.loads((tmp_path / "job.json").read_text())
    assert report["owners"][0]["expression"] == "stats.errors"
    assert report["target"] == f"{NODE} {scripts / 'job.js'}"
    assert list(scratch.iterdir()) == []  # every intermediate snapshot deleted
    assert report["heapsnapshots"] == []


def test_out_keeps_the_snapshots(
    scripts: Path, tmp_path: Path, stopped: list[subprocess.Popen[str]]
) -> None:
    proc = start(scripts / "service.js")
    stopped.append(proc)
    done, report = leaks_pid(proc.pid, tmp_path / "r.json", "--out", str(tmp_path / "keep"))
    assert done.returncode == 1, done.stderr
    kept = sorted((tmp_path / "keep").glob("*.heapsnapshot"))
    assert len(kept) == 6 and report["heapsnapshots"] == [str(k) for k in kept]


def test_ctrl_c_reports_partial_and_closes_the_inspector(
    scripts: Path, tmp_path: Path, stopped: list[subprocess.Popen[str]]
) -> None:
    proc = start(scripts / "service.js")
    stopped.append(proc)
    leaks = subprocess.Popen(
        [sys.executable, "-m", "memdiag", "leaks", "--pid", str(proc.pid), "--every", "1",
         "--iterations", "20", "--json", str(tmp_path / "p.json")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert leaks.stderr is not None
    for line in leaks.stderr:
        if line.startswith("snapshot 6/20"):
            break
    leaks.send_signal(signal.SIGINT)
    out, err = leaks.communicate(timeout=120)
    report = json.loads((tmp_path / "p.json").read_text())
    assert report["partial"] is True and 7 <= report["snapshots"] < 21, err
    assert report["owners"][0]["expression"] == "service.processedRecords"
    assert "PARTIAL" in out
    deadline = time.monotonic() + 5
    while listening_ports(proc.pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert listening_ports(proc.pid) == set()
    assert proc.poll() is None


def test_leaks_pid_of_a_process_that_is_neither_node_nor_python_is_one_line() -> None:
    # A node pid goes to the inspector, a CPython one to the Python attach; anything else
    # is refused in one line by the Python side.
    other = subprocess.Popen(["sleep", "30"])
    try:
        done = memdiag("leaks", "--pid", str(other.pid), "--every", "1", "--iterations", "5")
    finally:
        other.kill()
        other.wait()
    assert done.returncode == 2
    assert "not a CPython process" in done.stderr and "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
