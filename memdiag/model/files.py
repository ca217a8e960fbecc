"""Reading and writing memdiag's JSON files: versioned, checked, written atomically."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from memdiag.errors import MemdiagError
from memdiag.versions import SCHEMA_VERSION as SCHEMA_VERSION

Model = TypeVar("Model")
# Kinds whose format has moved on, with every version still read (the newest is written).
KIND_VERSIONS: dict[str, tuple[int, ...]] = {"sweep": (1, 2)}


def dumps(data: Any, indent: int = 0) -> str:
    """Return `data` as indented JSON, with lists of scalars (timeline rows) on one line."""
    pad, inner = " " * indent, " " * (indent + 1)
    if isinstance(data, dict) and data:
        items = [f"{inner}{json.dumps(str(k))}: {dumps(v, indent + 1)}" for k, v in data.items()]
        return "{\n" + ",\n".join(items) + f"\n{pad}}}"
    if isinstance(data, list | tuple) and any(isinstance(v, dict | list | tuple) for v in data):
        rows = [f"{inner}{dumps(v, indent + 1)}" for v in data]
        return "[\n" + ",\n".join(rows) + f"\n{pad}]"
    return json.dumps(data)


def write_json_atomic(path: str | os.PathLike[str], data: Any) -> Path:
    """Write `data` as JSON to `path` through a temporary file and a rename; return the path.

    A reader never sees half a file, and a crash mid-write keeps the previous version.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(dumps(data) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


def load_json(path: str | os.PathLike[str], kinds: tuple[str, ...]) -> dict[str, Any]:
    """Return a memdiag JSON file's content after checking it is one of `kinds`, a version read.

    A missing, corrupt, foreign or newer-version file is a MemdiagError (exit 2).
    """
    try:
        data = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise MemdiagError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise MemdiagError(f"{path}: not a memdiag JSON file ({exc})") from None
    if not isinstance(data, dict) or "schema_version" not in data:
        raise MemdiagError(f"{path}: not a memdiag JSON file (no schema_version)")
    readable = KIND_VERSIONS.get(str(data.get("kind")), (SCHEMA_VERSION,))
    if data["schema_version"] not in readable:
        raise MemdiagError(
            f"{path}: schema_version {data['schema_version']!r}, this memdiag reads "
            f"{' or '.join(map(str, readable))}"
        )
    if data.get("kind") not in kinds:
        raise MemdiagError(f"{path}: holds a {data.get('kind')!r}, expected {' or '.join(kinds)}")
    return data


def load_model(
    path: str | os.PathLike[str],
    kind: str,
    build: Callable[[dict[str, Any]], Model],
    damaged: tuple[type[Exception], ...] = (TypeError, ValueError, KeyError),
) -> Model:
    """Return the model `build` makes of the `kind` file at `path`.

    A file of another kind or version is refused by `load_json`; a field that does not fit
    (SchemaError, see schema.py) is a MemdiagError naming the file and the field, and one
    that `build` cannot read otherwise (one of `damaged`) names the file as damaged.
    """
    from memdiag.model.schema import SchemaError

    data = load_json(path, (kind,))
    try:
        return build(data)
    except SchemaError as exc:
        raise MemdiagError(f"{path}: {exc}") from None
    except damaged as exc:
        raise MemdiagError(f"{path}: damaged {kind} file ({exc})") from None
