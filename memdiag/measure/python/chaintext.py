"""Spells a reference chain as code a user could type: `bus.EVENT_BUS._handlers['x'][3].__self__`.

A path is [Root, object, ..., sample]. Each hop is named from the holder's side: an
attribute (`.name`, also for `__slots__`, bound methods' `__self__` and `__func__`,
`functools.partial`'s `func`/`args`/`keywords`), an item (`['key']`, `[3]`), a closure cell
(`.__closure__[0].cell_contents`). Namespaces (a module's, a class's or an instance's
`__dict__`) fold into the attribute that follows them. Standard library only.
"""

from __future__ import annotations

import gc
import re
import types
from typing import Any

from memdiag.measure.python.chainroots import Root
from memdiag.measure.python.snapshot import type_name

_LITERALS = (str, int, float, bytes, bool, type(None))
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
# The logger manager's table is how a user reaches a named logger: logging.getLogger(name).
_LOGGER = re.compile(r"^logging(?:\.[A-Za-z_]+)*?\.manager\.loggerDict\[('(?:[^'\\]|\\.)*')\]")


def describe(path: list[Any]) -> dict[str, Any]:
    """Return the chain as JSON: root kind, expression, where the root is, and each hop."""
    root: Root = path[0]
    expression = root.expression
    cells = _cells(path)
    hops: list[dict[str, Any]] = [
        {"via": expression, "type": "module" if root.module is not None else root.kind}
    ]
    kind = root.kind
    if kind == "module global" and len(path) > 2 and isinstance(path[2], type):
        kind = "class attribute"
    objects = path[1:]
    for index, child in enumerate(objects[1:], start=1):
        parent = objects[index - 1]
        owner = objects[index - 2] if index >= 2 else root
        via = _hop(owner, parent, child, cells)
        if via is None:
            continue
        hop = {"via": via, "type": type_name(type(child)), "items": _items(child)}
        if isinstance(parent, types.CellType):
            kind = "closure"
            hop["closure variable"] = cells.get(id(parent), ("?", 0))[0]
        expression += via
        hops.append(hop)
    if kind == "module global" and len(hops) > 2 and hops[1]["type"] in _REGISTRY_TYPES:
        kind = "registry"
    expression = _LOGGER.sub(r"logging.getLogger(\1)", expression)
    if expression.startswith("logging.getLogger("):
        kind = "registry"
    out: dict[str, Any] = {"root": kind, "expression": expression, "hops": hops}
    if root.where:
        out["where"] = root.where
    return out


_REGISTRY_TYPES = {"list", "dict", "set", "collections.deque", "collections.OrderedDict"}


def _hop(owner: Any, parent: Any, child: Any, cells: dict[int, tuple[str, int]]) -> str | None:
    """Return how `parent` refers to `child`, None to fold the hop into the next one.

    `owner` holds `parent`: when `parent` is its namespace, keys are attribute names.
    """
    if isinstance(parent, types.CellType):
        return f".__closure__[{cells.get(id(parent), ('?', 0))[1]}].cell_contents"
    if _is_lru(owner) and isinstance(parent, dict):
        return ".<lru_cache key>" if any(k is child for k in parent) else ".<lru_cache value>"
    if _is_lru(parent):
        if isinstance(child, dict) and child is not _namespace(parent):
            return None  # the cache's table: the next hop says key or value
        if not isinstance(child, dict | types.FunctionType):
            # A bounded cache refers to its entries' keys and results directly.
            return ".<lru_cache key>" if isinstance(child, tuple) else ".<lru_cache value>"
    if isinstance(parent, dict):
        return _item(owner, parent, child)
    if isinstance(parent, tuple) and parent and all(isinstance(v, types.CellType) for v in parent):
        return None  # a closure: the cell names the variable
    if isinstance(parent, list | tuple) or _is_sequence(parent):
        for index, value in enumerate(parent):
            if value is child:
                return f"[{index}]"
    if isinstance(parent, set | frozenset):
        return "{...}"
    if isinstance(parent, types.MethodType):
        return ".__self__" if parent.__self__ is child else ".__func__"
    if isinstance(parent, types.FunctionType) and child is parent.__closure__:
        return None
    if isinstance(parent, type) and any(r is child for r in gc.get_referents(parent.__dict__)):
        return None  # a class's namespace (behind its mappingproxy): the next hop names it
    if child is _namespace(parent):
        return None  # an instance's namespace: the next hop names the attribute
    return f".{_attribute(parent, child)}"


def _is_lru(obj: Any) -> bool:
    return type(obj).__name__ == "_lru_cache_wrapper"


def _item(owner: Any, mapping: dict[Any, Any], child: Any) -> str:
    namespace = (
        (isinstance(owner, Root) and owner.module is not None)
        or isinstance(owner, type | types.ModuleType)
        or _namespace(owner) is mapping
    )
    for key, value in mapping.items():
        if value is child:
            if namespace and isinstance(key, str) and _IDENTIFIER.match(key):
                return f".{key}"
            return f"[{_key_text(key)}]"
    for key in mapping:
        if key is child:
            return "<key>"
    return "<a key>"


def _key_text(key: Any) -> str:
    if isinstance(key, _LITERALS) or (
        isinstance(key, tuple) and all(isinstance(k, _LITERALS) for k in key)
    ):
        text = repr(key)
        return text if len(text) <= 80 else text[:77] + "..."
    return f"<{type_name(type(key))} key>"


def _is_sequence(obj: Any) -> bool:
    from collections import deque

    return isinstance(obj, deque)


def _namespace(obj: Any) -> Any:
    if obj is None or isinstance(obj, Root):
        return None
    try:
        return object.__getattribute__(obj, "__dict__")
    except Exception:  # no namespace, or a foreign object's __dict__ raising anything
        return None


def _attribute(parent: Any, child: Any) -> str:
    # Python 3.11+ instances keep their attributes inline: the referent is the value itself.
    namespace = _namespace(parent)
    if isinstance(namespace, dict):
        for name, value in namespace.items():
            if value is child:
                return str(name)
    for name in dir(type(parent)):
        try:
            if getattr(parent, name) is child:
                return name
        except Exception:  # a property may raise anything; it is simply not the one
            continue
    return f"<{type_name(type(child))}>"


def _cells(path: list[Any]) -> dict[int, tuple[str, int]]:
    """Return, for the cells of the functions on `path`, the variable name and cell index."""
    names: dict[int, tuple[str, int]] = {}
    for function in path:
        if isinstance(function, types.FunctionType) and function.__closure__:
            free = function.__code__.co_freevars
            for index, (name, cell) in enumerate(zip(free, function.__closure__, strict=False)):
                names[id(cell)] = (name, index)
    return names


def _items(obj: Any) -> int | None:
    try:
        return len(obj)
    except Exception:  # len() of a foreign object may raise anything
        return None
