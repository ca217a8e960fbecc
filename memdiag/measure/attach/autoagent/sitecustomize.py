"""Installs memdiag's cooperative agent in every Python process `memdiag serve --agent -- CMD`
starts (this folder is put first on the command's PYTHONPATH; standard library only).

`MEMDIAG_AGENT_ROOT` names the folder memdiag is imported from: put first on `sys.path` for
that import only, so the process's own packages (a `memdiag` of its own included) are found
as before once it is done. Then the `sitecustomize` this one shadows, if any, runs as it would
have. Nothing here may stop the process: a failure is one line on stderr.
"""

import os
import sys


def _install() -> None:
    root = os.environ.get("MEMDIAG_AGENT_ROOT")
    if not root:
        return
    sys.path.insert(0, root)
    try:
        import atexit

        import memdiag.agent

        memdiag.agent.install()
        atexit.register(memdiag.agent.uninstall)
    except Exception as error:  # the process runs on without the agent
        sys.stderr.write(f"memdiag: no agent in process {os.getpid()}: {error}\n")
    finally:
        sys.path.remove(root)


def _chain() -> None:
    import importlib.machinery
    import importlib.util

    here = os.path.dirname(os.path.abspath(__file__))
    rest = [p for p in sys.path if os.path.abspath(p or os.curdir) != here]
    spec = importlib.machinery.PathFinder.find_spec("sitecustomize", rest)
    if spec is None or spec.loader is None:
        return
    module = importlib.util.module_from_spec(spec)
    sys.modules["sitecustomize"] = module
    spec.loader.exec_module(module)


_install()
_chain()
