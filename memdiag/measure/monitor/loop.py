"""The sampling loop of `memdiag monitor`: samples on a fixed grid, thresholds, hooks, stop.

The loop runs in the main thread and stops on the duration, on SIGINT or SIGTERM, or when
the followed process ends, which it notices within POLL_S even at long intervals. A command
it started is stopped with it (SIGTERM, then SIGKILL after STOP_GRACE_S), never left behind.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from array import array
from collections.abc import Callable
from dataclasses import dataclass
from types import FrameType
from typing import Any

from memdiag.analysis.fit import RunningFit
from memdiag.analysis.monitor import summarize
from memdiag.analysis.thresholds import ThresholdTracker
from memdiag.errors import MemdiagError
from memdiag.measure.monitor.sample import MonitorSample, Watcher
from memdiag.model import MonitorSummary

POLL_S = 0.1
STOP_GRACE_S = 5.0


@dataclass(frozen=True)
class MonitorConfig:
    """Interval and duration in seconds (duration 0: until the end), thresholds in percent."""

    interval_s: float
    duration_s: float
    warn: float
    critical: float
    on_critical: tuple[str, ...] = ()
    on_critical_timeout_s: float = 30.0


class Series:
    """The samples kept for the summary and the plot: arrays of floats, about 40 bytes each."""

    def __init__(self) -> None:
        self.times, self.rss, self.percents = array("d"), array("d"), array("d")
        self.uss_times, self.uss = array("d"), array("d")
        self.fit = RunningFit()
        self.min_rss = self.max_rss = 0.0

    def add(self, sample: MonitorSample) -> None:
        first = not self.rss
        self.min_rss = sample.rss_bytes if first else min(self.min_rss, sample.rss_bytes)
        self.max_rss = max(self.max_rss, sample.rss_bytes)
        self.times.append(sample.t_s)
        self.rss.append(sample.rss_bytes)
        self.percents.append(sample.percent)
        if sample.uss_bytes is not None:
            self.uss_times.append(sample.t_s)
            self.uss.append(sample.uss_bytes)
        self.fit.add(sample.t_s, sample.rss_bytes)

    def summary(self, config: MonitorConfig, limit_bytes: int) -> MonitorSummary | None:
        """Return the summary of every sample so far, None before the first."""
        thresholds = (config.warn, config.critical)
        return summarize(self.times, self.rss, self.percents, thresholds, limit_bytes, self.uss)


def start_command(
    argv: tuple[str, ...], env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """Start the followed command (in `env`, else memdiag's environment); its output goes
    to stderr so stdout stays the monitor's."""
    try:
        return subprocess.Popen(argv, stdout=sys.stderr.fileno(), stdin=subprocess.DEVNULL, env=env)
    except OSError as exc:
        raise MemdiagError(f"cannot start {argv[0]!r}: {exc.strerror or exc}") from None


def stop_process(proc: subprocess.Popen[Any]) -> None:
    """Terminate `proc` politely, kill it after STOP_GRACE_S, and reap it."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def exit_status(returncode: int) -> int:
    """Return a shell-style exit status: a death by signal N is 128 + N."""
    return 128 - returncode if returncode < 0 else returncode


class MonitorSession:
    """Samples `watcher` until the duration, a signal, or the end of the followed process."""

    def __init__(
        self,
        watcher: Watcher,
        config: MonitorConfig,
        on_sample: Callable[[MonitorSample], None],
        on_event: Callable[[dict[str, Any]], None],
        child: subprocess.Popen[bytes] | None = None,
    ) -> None:
        self.watcher, self.config, self.child = watcher, config, child
        self.on_sample, self.on_event = on_sample, on_event
        self.series = Series()
        self.tracker = ThresholdTracker(config.warn, config.critical)
        self.ended = ""
        self.exit_code = 0
        self._stop = threading.Event()
        self._hook: tuple[subprocess.Popen[bytes], float] | None = None

    def request_stop(self, signum: int, frame: FrameType | None = None) -> None:
        """Stop at the next opportunity; usable as a signal handler."""
        if not self.ended:
            self.ended, self.exit_code = signal.Signals(signum).name, 128 + signum
        self._stop.set()

    def run(self) -> None:
        """Sample until the end; `ended` and `exit_code` say why it ended."""
        previous = {s: signal.signal(s, self.request_stop) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            self._loop()
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
            self._finish()

    def _loop(self) -> None:
        interval, duration = self.config.interval_s, self.config.duration_s
        start, tick = time.monotonic(), 0
        while not self._stop.is_set() and not self._process_ended():
            sample = self.watcher.sample(round(time.monotonic() - start, 3))
            if sample is None:
                self._process_ended(force=True)
                return
            self._record(sample)
            tick += 1
            if duration and tick * interval > duration + 1e-9:
                self.ended = self.ended or "duration"
                return
            self._wait_until(max(start + tick * interval, time.monotonic()))

    def _process_ended(self, force: bool = False) -> bool:
        if self.child is not None and self.child.poll() is not None:
            self.ended = self.ended or "exited"
            self.exit_code = exit_status(self.child.returncode)
            return True
        if force or not self.watcher.alive():
            self.ended = self.ended or "exited"
            return True
        return False

    def _wait_until(self, deadline: float) -> None:
        while (remaining := deadline - time.monotonic()) > 0:
            if self._stop.wait(min(remaining, POLL_S)) or self._process_ended():
                return

    def _record(self, sample: MonitorSample) -> None:
        self.series.add(sample)
        self.on_sample(sample)
        self._reap_hook()
        crossing = self.tracker.update(sample.percent)
        if crossing is None:
            return
        self.on_event(
            {
                "event": crossing.event,
                "level": crossing.level,
                "previous": crossing.previous,
                "t_s": sample.t_s,
                "time": sample.time,
                "percent": sample.percent,
                "rss_bytes": sample.rss_bytes,
                "limit_bytes": self.watcher.limit_bytes,
            }
        )
        if crossing.event == "critical" and self.config.on_critical:
            self._start_hook(sample)

    def _start_hook(self, sample: MonitorSample) -> None:
        if self._hook is not None:
            self.on_event({"event": "on-critical", "t_s": sample.t_s, "skipped": "still running"})
            return
        argv = self.config.on_critical
        try:
            proc = subprocess.Popen(argv, stdout=sys.stderr.fileno(), stdin=subprocess.DEVNULL)
        except OSError as exc:
            self.on_event({"event": "on-critical", "t_s": sample.t_s, "error": str(exc)})
            return
        self._hook = (proc, time.monotonic())

    def _reap_hook(self, final: bool = False) -> None:
        """Report a finished hook; kill one that ran past its timeout (or the monitor's end)."""
        if self._hook is None:
            return
        proc, started = self._hook
        overdue = time.monotonic() - started > self.config.on_critical_timeout_s
        if proc.poll() is None and not (overdue or final):
            return
        if proc.poll() is None:
            stop_process(proc)
            outcome: dict[str, Any] = {"timeout_s": self.config.on_critical_timeout_s}
        else:
            outcome = {"exit_code": proc.returncode}
        self._hook = None
        self.on_event({"event": "on-critical", "command": list(self.config.on_critical), **outcome})

    def _finish(self) -> None:
        if self._hook is not None:
            proc, started = self._hook
            left = self.config.on_critical_timeout_s - (time.monotonic() - started)
            try:
                # A hook already running is let finish, within its timeout and the grace.
                proc.wait(max(0.0, min(left, STOP_GRACE_S)))
            except subprocess.TimeoutExpired:
                pass
            self._reap_hook(final=True)
        if self.child is not None and self.child.poll() is None:
            stop_process(self.child)
