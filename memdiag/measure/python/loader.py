"""Executed, not imported, inside a running Python process memdiag got into: starts the agent.

memdiag's injected one-liner runs this file with `exec` in a namespace of its own holding
`ROOT` (the directory memdiag is imported from) and `REQUEST` (the request's path), under the
GIL taken for it, and the process waits only until the thread below is started. The thread
imports `memdiag.measure.python.agent`, answers, and removes itself: the memdiag modules it
imported and the path it added are taken out again, and `done.json` (with its thread id) is
written last. Standard library only, and the least of it: a raw thread (`_thread`, not
`threading`, which a service that has no threads of its own would keep loaded), `traceback`
only on a failure.
"""

import _thread
import gc
import json
import os
import sys


def _write(path: str, data: dict) -> None:  # type: ignore[type-arg]
    with open(path + ".tmp", "w") as out:
        json.dump(data, out)
    os.replace(path + ".tmp", path)


def _run(root: str, request_path: str) -> None:
    _name("memdiag-agent")
    before = set(sys.modules)
    added = root not in sys.path
    folder = os.path.dirname(request_path)
    if added:
        sys.path.insert(0, root)
    try:
        from memdiag.measure.python import agent

        with open(request_path) as source:
            agent.answer(json.load(source))
        del agent
    except BaseException:
        import traceback

        _write(os.path.join(folder, "error.json"), {"traceback": traceback.format_exc()})
    finally:
        for name in [n for n in sys.modules if n not in before]:
            if name == "memdiag" or name.startswith("memdiag."):
                del sys.modules[name]
        if added and root in sys.path:
            sys.path.remove(root)
        gc.collect()
        _trim()
        _write(os.path.join(folder, "done.json"), {"thread": _thread.get_native_id()})


def _name(name: str) -> None:
    """Name this thread for the system (`/proc/PID/task/TID/comm`): a raw thread has no
    `threading` name, and whoever looks at the process can tell memdiag's thread apart."""
    try:
        import ctypes

        ctypes.CDLL(None).prctl(15, name.encode()[:15], 0, 0, 0)  # PR_SET_NAME
    except (OSError, AttributeError):
        pass


def _trim() -> None:
    """Give the memory freed by the visit back to the system (glibc keeps it otherwise)."""
    try:
        import ctypes

        ctypes.CDLL(None).malloc_trim(0)
    except (OSError, AttributeError):
        pass


if __name__ == "memdiag_loader":  # exec'd by memdiag, never on an import
    _thread.start_new_thread(_run, (ROOT, REQUEST))  # type: ignore[name-defined]  # noqa: F821
