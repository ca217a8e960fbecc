"""Where a reference chain may start: the roots the chain search stops at, and how each reads.

- a module's globals (its `__dict__`), memdiag's own and `__main__` (memdiag's child) left out;
- a class or function, found by `__module__` and `__qualname__` without a heap scan;
- a local variable of another thread's frame (taken with `capture_threads` before the fork
  the search runs in: a fork keeps only the thread that forked);
- a signal handler (`signal.getsignal`), an `atexit` callback: registries kept in C.
Standard library only.
"""

from __future__ import annotations

import enum
import signal
import sys
import threading
import types
from dataclasses import dataclass, field
from typing import Any

# Another thread's locals, read in the process before the search's fork: id -> value, and
# id -> (local name, function, thread name). Only this one dict refers to the values.
_THREAD_VALUES: dict[int, Any] = {}
_THREAD_NAMES: dict[int, tuple[str, str, str]] = {}
# Callbacks found in atexit's table (and taken out of it, in the search's fork), by id.
_ATEXIT: set[int] = set()


@dataclass
class Root:
    """Where a chain starts: its kind, the expression it starts with, what holds it.

    `prefix` are the objects between the root and the first object the search reached
    (a module's `__dict__`, the classes enclosing a nested class).
    """

    kind: str
    expression: str
    where: str = ""
    prefix: list[Any] = field(default_factory=list)
    module: Any = None


def capture_threads() -> None:
    """Remember every other thread's frame locals, for a search run later in a fork."""
    _THREAD_VALUES.clear()
    _THREAD_NAMES.clear()
    names = {t.ident: t.name for t in threading.enumerate()}
    current = threading.get_ident()
    for ident, frame in sys._current_frames().items():
        if ident == current:
            continue
        f: types.FrameType | None = frame
        while f is not None:
            for local, value in list(f.f_locals.items()):
                if id(value) not in _THREAD_VALUES and not isinstance(value, types.ModuleType):
                    _THREAD_VALUES[id(value)] = value
                    _THREAD_NAMES[id(value)] = (
                        local,
                        f.f_code.co_name,
                        names.get(ident, str(ident)),
                    )
            f = f.f_back
    del frame


def release_threads() -> None:
    """Drop the other threads' locals kept by `capture_threads` (once the fork has them)."""
    _THREAD_VALUES.clear()
    _THREAD_NAMES.clear()


def _excluded_module(name: str) -> bool:
    if name == "__main__":  # memdiag's child; but a service memdiag attached to is its own
        spec = getattr(sys.modules.get("__main__"), "__spec__", None)
        return getattr(spec, "name", "").startswith("memdiag.")
    return name.startswith("memdiag.measure")


class RootIndex:
    """The roots by id of the object a chain search reaches there."""

    def __init__(self) -> None:
        self.names: dict[int, str] = {}
        self.modules: dict[int, Any] = {}
        self.excluded: set[int] = set()
        self.signals: dict[int, str] = {}
        self.canonical: dict[int, tuple[str, Any]] = {}  # id -> (expression, module)

    @classmethod
    def build(cls) -> RootIndex:
        """Return the index of the current process's roots."""
        index = cls()
        for name, module in list(sys.modules.items()):
            namespace = getattr(module, "__dict__", None)
            if not isinstance(namespace, dict):
                continue
            if _excluded_module(name):
                index.excluded.add(id(namespace))
            elif id(namespace) not in index.names:
                index.names[id(namespace)] = name
                index.modules[id(namespace)] = module
        index.excluded.update({id(_THREAD_VALUES), id(sys.modules)})
        named = {id(v) for m in index.modules.values() for v in list(vars(m).values())}
        for oid, module in index.modules.items():
            index._index_shared(index.names[oid], module, named)
        for number in sorted(signal.valid_signals()):
            try:
                handler = signal.getsignal(number)
            except (ValueError, OSError):
                continue
            if callable(handler) and handler is not signal.default_int_handler:
                index.signals[id(handler)] = signal.Signals(number).name
        return index

    def _index_shared(self, name: str, module: Any, named: set[int]) -> None:
        """Index the objects a module's own singleton shares through a class attribute, by
        their canonical spelling: `logging.root.manager` and `logging.root.manager.loggerDict`
        (every logger refers to the manager too: a search from a logger's table would
        otherwise name it from whichever module's logger it met first). Only an object of a
        class of the same module that no module global names itself (`named`), no enum."""
        for global_name, value in list(vars(module).items()):
            kind = type(value)
            if global_name.startswith("__") or getattr(kind, "__module__", None) != name:
                continue
            if isinstance(value, _NOT_SHARED) or not hasattr(value, "__dict__"):
                continue
            own = vars(value)
            for klass in kind.__mro__[:-1]:
                for attr, shared in list(vars(klass).items()):
                    if attr.startswith("__") or attr in own or isinstance(shared, _NOT_SHARED):
                        continue
                    if getattr(type(shared), "__module__", None) != name:
                        continue
                    if id(shared) in named or id(shared) in self.canonical:
                        continue
                    if not hasattr(shared, "__dict__") or isinstance(shared, enum.Enum):
                        continue
                    where = f"{name}.{global_name}.{attr}"
                    self.canonical[id(shared)] = (where, module)
                    for key, table in list(vars(shared).items()):
                        if isinstance(table, _TABLES) and id(table) not in self.canonical:
                            self.canonical[id(table)] = (f"{where}.{key}", module)

    def is_excluded(self, holder: Any) -> bool:
        """True for memdiag's own namespaces and copies of the module table."""
        return id(holder) in self.excluded

    def root_of(self, obj: Any) -> Root | None:
        """Return the root `obj` is, or is named from; None when it is an ordinary object."""
        oid = id(obj)
        if oid in self.names:
            return Root("module global", self.names[oid], module=self.modules[oid])
        if oid in self.canonical:
            expression, module = self.canonical[oid]
            return Root("module global", expression, module=module)
        if oid in _THREAD_NAMES:
            local, function, thread = _THREAD_NAMES[oid]
            return Root("thread stack", local, f"local of {function}() in thread {thread!r}")
        if oid in self.signals:
            name = self.signals[oid]
            return Root("registry", f"signal.getsignal(signal.{name})", "signal handler")
        if isinstance(obj, type | types.FunctionType):
            return self._named(obj)
        return None

    def _named(self, obj: Any) -> Root | None:
        """Return the module root of a class or function reachable by its qualified name."""
        module_name = getattr(obj, "__module__", None)
        qualname = getattr(obj, "__qualname__", "")
        module = sys.modules.get(module_name) if isinstance(module_name, str) else None
        if module is None or _excluded_module(str(module_name)) or "<" in qualname:
            return None
        namespace = getattr(module, "__dict__", None)
        if id(namespace) not in self.names:
            return None
        prefix: list[Any] = [namespace]
        holder: Any = module
        for part in qualname.split("."):
            holder = getattr(holder, part, None)
            if holder is None:
                return None
            prefix.append(holder)
        if prefix[-1] is not obj:
            return None
        return Root("module global", self.names[id(namespace)], prefix=prefix[:-1], module=module)

    def starts(self) -> list[tuple[Root, Any]]:
        """Return (root, first object) for a forward walk: modules, thread locals, handlers."""
        out: list[tuple[Root, Any]] = []
        for oid, name in self.names.items():
            out.append((Root("module global", name, module=self.modules[oid]), None))
        out = [(r, r.module.__dict__) for r, _ in out]
        for oid, value in _THREAD_VALUES.items():
            local, function, thread = _THREAD_NAMES[oid]
            root = Root("thread stack", local, f"local of {function}() in thread {thread!r}")
            out.append((root, value))
        return out


# What a class attribute shared by a module's singleton may be indexed as (not code, not
# plain values), and the tables of it that are indexed too.
_NOT_SHARED = (
    type,
    types.ModuleType,
    types.FunctionType,
    types.BuiltinFunctionType,
    types.MethodType,
    property,
    staticmethod,
    classmethod,
    str,
    bytes,
    int,
    float,
    bool,
    tuple,
    frozenset,
    type(None),
)
_TABLES = (dict, list, set)


def unregistered_root(obj: Any) -> Root:
    """Return the root of an object no tracked object refers to: an `atexit` callback, or C.

    Only in a forked copy: `atexit.unregister` is how a callback is recognised (the module
    lists none), and this copy never runs its exit handlers.
    """
    import atexit

    if id(obj) in _ATEXIT:  # unregistered by an earlier group's search: still its root
        return Root("registry", f"<atexit callback {_callable_name(obj)}>", "atexit")
    kind = type(obj).__qualname__
    if callable(obj):
        # atexit keeps the count of its slots after unregister: the callback's references
        # tell whether it let one go.
        before = sys.getrefcount(obj)
        atexit.unregister(obj)
        if sys.getrefcount(obj) < before:
            _ATEXIT.add(id(obj))
            return Root("registry", f"<atexit callback {_callable_name(obj)}>", "atexit")
    return Root(
        "unreachable",
        f"<{kind} at {id(obj):#x}>",
        "no Python object refers to it: held from C (an extension, a running thread's stack)",
    )


def _callable_name(obj: Any) -> str:
    name = getattr(obj, "__qualname__", None) or type(obj).__qualname__
    return str(name)
