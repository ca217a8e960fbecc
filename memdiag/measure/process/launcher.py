"""Runs in the child: the tiny process between memdiag and the job; reports the job's rusage.

Run as `python -I -S launcher.py RESULT LIFELINE_FD TIMEOUT ARGV...` (TIMEOUT in seconds,
`-` for none), standard library only.

Why it exists: on Linux a child's ru_maxrss starts from the high-water mark of the process
that launched it (kept across fork and exec), so memdiag itself, with its plotting and
database libraries loaded, cannot launch the job and read wait4. This launcher is a bare
interpreter (about 10 MB), so the job's peak is its own. It also:
- puts the job in a session of its own, so the whole process tree can be stopped at once;
- kills that tree on SIGTERM/SIGUSR1 (memdiag's way of enforcing a timeout or a limit) and
  when memdiag dies (the lifeline pipe reaches EOF), so no job outlives it; a stop signal
  that arrives while the job is being started waits (blocked) and is acted on right after;
- stops the job TIMEOUT seconds after it started, counted here so that a slow start of
  memdiag or of this interpreter neither shortens nor lengthens the job's time;
- writes wall time, CPU time, ru_maxrss and how the job ended to RESULT as JSON.
"""

import json
import os
import select
import signal
import sys
import time

EXIT_SPAWN_FAILED = 3
STOP_SIGNALS = {signal.SIGTERM, signal.SIGUSR1}


def main() -> None:
    result_path, lifeline, argv = sys.argv[1], int(sys.argv[2]), sys.argv[4:]
    timeout = None if sys.argv[3] == "-" else float(sys.argv[3])
    timed_out = False
    os.set_inheritable(lifeline, False)
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    job = 0

    def stop(*_: object) -> None:
        if job:
            try:
                os.killpg(job, signal.SIGKILL)
            except ProcessLookupError:
                pass

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGUSR1, stop)
    # Ctrl-C reaches memdiag and this launcher together: memdiag decides, then sends SIGUSR1.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # A stop arriving before posix_spawnp returns would find no job to kill and be lost:
    # blocked here, it stays pending and runs `stop` as soon as `job` is known. The job
    # itself starts with the mask memdiag gave us and SIGINT at its default.
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    started = time.monotonic()
    try:
        job = os.posix_spawnp(
            argv[0], argv, os.environ, setsid=True, setsigmask=mask, setsigdef=[signal.SIGINT]
        )
    except OSError as exc:
        write(result_path, {"spawn_error": f"cannot start {argv[0]!r}: {exc.strerror or exc}"})
        sys.exit(EXIT_SPAWN_FAILED)
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
    while True:
        pid, status, usage = os.wait4(job, os.WNOHANG)
        if pid == job:
            break
        left = None if timeout is None else started + timeout - time.monotonic()
        if left is not None and left <= 0:
            timed_out, timeout = True, None
            stop()
            continue
        ready, _, _ = select.select([wake_r, lifeline], [], [], left)
        if wake_r in ready:
            os.read(wake_r, 512)
        if lifeline in ready and not os.read(lifeline, 512):
            stop()  # memdiag is gone: the job must not outlive it
    wall = time.monotonic() - started
    stop()  # descendants the job left behind in its session
    write(
        result_path,
        {
            "pid": job,
            "wall_s": wall,
            "maxrss_kb": usage.ru_maxrss,
            "cpu_s": usage.ru_utime + usage.ru_stime,
            "exit_code": os.WEXITSTATUS(status) if os.WIFEXITED(status) else None,
            "signal": os.WTERMSIG(status) if os.WIFSIGNALED(status) else None,
            "timed_out": timed_out,
        },
    )


def write(path: str, data: dict[str, object]) -> None:
    with open(path + ".tmp", "w") as handle:
        json.dump(data, handle)
    os.replace(path + ".tmp", path)


if __name__ == "__main__":
    main()
