"""Reading a V8 `.heapsnapshot` into numpy arrays, streamed: one column per field kept.

The file is JSON (`snapshot.meta`, then flat integer arrays `nodes`, `edges`, `locations`,
then `strings`), written by `v8.writeHeapSnapshot`, `--heapsnapshot-signal` or the inspector's
`HeapProfiler.takeHeapSnapshot`. A 190 MB file holds about 3 M nodes and 8 M edges: as Python
objects that is gigabytes, as the columns below about 17 bytes a node and 9 an edge. The
integer sections are read in blocks and parsed by numpy, so the text is never whole in memory.

The columns the dominator tree never reads (node names and ids, edge names) and the string
table are written, as they are parsed, to an unlinked temporary file and mapped back read-only
(`Spill`): their pages are in memory only once something reads them (a name on a path, the
ids of a leak series), and the kernel can drop them again (`HeapGraph.release_pages`). So are
the node types and sizes, which the dominators read once at their end. That is half the graph.

A truncated or foreign file is a `MemdiagError` (exit 2) naming what is missing.
"""

from __future__ import annotations

import json
import mmap
import os
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import IO, TYPE_CHECKING, Any

from memdiag.errors import MemdiagError

if TYPE_CHECKING:
    import numpy as np

# The text parsed at a time: its int64 values, and their copy with the last block's rest,
# are the reading's temporary arrays (about 6 bytes a character).
BLOCK = 2 * 1024 * 1024
NODE_FIELDS = ("type", "name", "id", "self_size", "edge_count")
EDGE_FIELDS = ("type", "name_or_index", "to_node")
# The fields written to the spill file as they are read (see the module's docstring).
NODE_SPILLED = ("name", "id")
EDGE_SPILLED = ("name_or_index",)
# The narrowest type each field fits in as V8 writes it; a column whose values do not fit
# (an object of 4 GB or more) is widened to int64 while it is read.
NODE_DTYPES = ["uint8", "uint32", "uint32", "uint32", "uint32"]
EDGE_DTYPES = ["uint8", "uint32", "uint32"]


@dataclass
class HeapGraph:
    """One V8 heap snapshot as columns: node `i` has its edges at
    `first_edge[i]:first_edge[i + 1]`; `edge_to` holds node indices (not V8's offsets).

    `node_name` and `edge_name` index `strings`, except for element and hidden edges, whose
    `edge_name` is the index itself. `locations` maps a closure's node index to (script id,
    line, column), 0-based as V8 writes them.
    """

    node_types: list[str]
    edge_types: list[str]
    node_type: np.ndarray
    node_name: np.ndarray
    node_id: np.ndarray
    self_size: np.ndarray
    first_edge: np.ndarray
    edge_type: np.ndarray
    edge_name: np.ndarray
    edge_to: np.ndarray
    strings: Sequence[str]
    locations: dict[int, tuple[int, int, int]]
    # The read-only mappings of the spilled columns and strings (see `release_pages`).
    mapped: list[mmap.mmap] = field(default_factory=list)

    def edge_owners(self, edges: Any) -> Any:
        """Return the node whose edges hold each of `edges` (an edge index or an array)."""
        import numpy as np

        return np.searchsorted(self.first_edge, edges, side="right") - 1

    def release_pages(self) -> None:
        """Drop the pages of the spilled columns that were read from this process's memory:
        they stay in the file (and the page cache), read again when next asked for."""
        for mapping in self.mapped:
            mapping.madvise(mmap.MADV_DONTNEED)

    @property
    def node_count(self) -> int:
        return len(self.node_id)

    def type_code(self, name: str) -> int:
        """Return the node type's number (`-1` when this V8 has no such type)."""
        return self.node_types.index(name) if name in self.node_types else -1

    def edge_code(self, name: str) -> int:
        return self.edge_types.index(name) if name in self.edge_types else -1


def read_heapsnapshot(path: str | os.PathLike[str]) -> HeapGraph:
    """Return the heap graph stored at `path`, read in blocks."""
    from memdiag.measure.process.rollup import map_large_blocks

    map_large_blocks()  # the analysis's temporary arrays go back to the system when freed
    try:
        with open(path, "rb") as handle:
            return _Reader(handle, str(path)).graph()
    except FileNotFoundError:
        raise MemdiagError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise MemdiagError(f"{path}: is a directory, not a .heapsnapshot") from None


def is_heapsnapshot(path: str | os.PathLike[str]) -> bool:
    """True when the file at `path` begins as a V8 heap snapshot does."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(64).lstrip()
    except OSError:
        return False
    return head.startswith(b'{"snapshot":')


class _Reader:
    """The file's sections in order, each found by its key and read to its closing bracket."""

    def __init__(self, handle: IO[bytes], name: str) -> None:
        self.handle = handle
        self.name = name
        self.buffer = b""
        self.eof = False
        self.mapped: list[mmap.mmap] = []

    def fail(self, what: str) -> MemdiagError:
        return MemdiagError(f"{self.name}: not a complete V8 heap snapshot ({what})")

    def graph(self) -> HeapGraph:
        import numpy as np

        meta, node_count, edge_count = self.header()
        nf, ef = meta["node_fields"], meta["edge_fields"]
        missing = [f for f in NODE_FIELDS if f not in nf] + [f for f in EDGE_FIELDS if f not in ef]
        if missing:
            raise self.fail(f"no field {missing[0]}")
        node_keep = [nf.index(f) for f in NODE_FIELDS]
        spilled = [f in NODE_SPILLED for f in NODE_FIELDS]
        nodes = self.columns("nodes", nf, node_count, node_keep, NODE_DTYPES, spilled)
        edge_keep = [ef.index(f) for f in EDGE_FIELDS]
        spilled = [f in EDGE_SPILLED for f in EDGE_FIELDS]
        edges = self.columns("edges", ef, edge_count, edge_keep, EDGE_DTYPES, spilled)
        locations = self.locations(meta.get("location_fields", []), len(nf))
        strings = self.strings()
        from memdiag.measure.process.rollup import give_back

        give_back()  # the blocks the sections were parsed from
        n_type, n_name, n_id, n_size, n_edges = nodes
        del nodes
        # Read whole only by the summary (and the sizes once by the dominators): out of the
        # process's memory until then, and again after (`release_pages`).
        n_type, n_size = spill(n_type, self.mapped), spill(n_size, self.mapped)
        # Offsets into the edges: int32 while they leave room for a chunk's reach past the end.
        wide = np.int32 if int(n_edges.sum()) < 2**31 - 2**24 else np.int64
        first_edge = np.zeros(node_count + 1, dtype=wide)
        np.cumsum(n_edges, out=first_edge[1:])
        del n_edges
        if int(first_edge[-1]) != edge_count:
            raise self.fail("edge counts do not add up")
        e_type, e_name, e_to = edges
        e_to //= len(nf)
        if edge_count and int(e_to.max()) >= node_count:
            raise self.fail("an edge points past the last node")
        if len(strings) and node_count and int(n_name.max()) >= len(strings):
            raise self.fail("a name points past the last string")
        graph = HeapGraph(
            node_types=list(meta["node_types"][0]),
            edge_types=list(meta["edge_types"][0]),
            node_type=n_type,
            node_name=n_name,
            node_id=n_id,
            self_size=n_size,
            first_edge=first_edge,
            edge_type=e_type,
            edge_name=e_name,
            edge_to=e_to,
            strings=strings,
            locations=locations,
            mapped=self.mapped,
        )
        graph.release_pages()  # the names were read whole for those checks
        return graph

    def header(self) -> tuple[dict[str, Any], int, int]:
        """Return `snapshot.meta`, the node count and the edge count from the file's head."""
        self.fill(64 * 1024)
        head = self.buffer.lstrip()
        if not head.startswith(b'{"snapshot":'):
            raise MemdiagError(f"{self.name}: not a V8 heap snapshot (.heapsnapshot JSON)")
        end = self.buffer.find(b',\n"nodes":[')
        end = end if end >= 0 else self.buffer.find(b',"nodes":[')
        if end < 0:
            raise self.fail("no nodes section")
        start = self.buffer.find(b"{", self.buffer.find(b'"snapshot":'))
        try:
            snapshot = json.loads(self.buffer[start:end].decode())
            meta = snapshot["meta"]
            counts = int(snapshot["node_count"]), int(snapshot["edge_count"])
            if not isinstance(meta["node_types"][0], list) or not meta["edge_types"][0]:
                raise TypeError("no type names")
        except (ValueError, KeyError, TypeError, IndexError):
            raise self.fail("unreadable header") from None
        self.buffer = self.buffer[end + 1 :]
        return meta, *counts

    def fill(self, size: int) -> None:
        while len(self.buffer) < size and not self.eof:
            block = self.handle.read(BLOCK)
            if not block:
                self.eof = True
            self.buffer += block

    def open_section(self, key: str) -> None:
        """Move past `"key":[`, failing when the file ends first."""
        marker = f'"{key}":['.encode()
        while True:
            at = self.buffer.find(marker)
            if at >= 0:
                self.buffer = self.buffer[at + len(marker) :]
                return
            if self.eof:
                raise self.fail(f"no {key} section")
            self.buffer = self.buffer[-len(marker) :]
            self.fill(len(self.buffer) + 1)

    def number_blocks(self, key: str) -> Iterator[bytes]:
        """Yield the text of section `key`'s integers in blocks that end at a comma."""
        self.open_section(key)
        while True:
            self.fill(BLOCK)
            close = self.buffer.find(b"]")
            if close >= 0:
                yield self.buffer[:close]
                self.buffer = self.buffer[close + 1 :]
                return
            if self.eof:
                raise self.fail(f"the {key} section is cut short")
            cut = self.buffer.rfind(b",")
            if cut < 0:
                self.fill(len(self.buffer) + BLOCK)
                continue
            yield self.buffer[:cut]
            self.buffer = self.buffer[cut + 1 :]

    def columns(
        self,
        key: str,
        fields: list[str],
        count: int,
        keep: list[int],
        dtypes: list[str],
        spilled: list[bool],
    ) -> list[Any]:
        """Return the kept fields of section `key` (`count` records) as columns of `dtypes`;
        the `spilled` ones written to a `Spill` as they are parsed, and mapped back."""
        import numpy as np

        width = len(fields)
        out: list[Any] = [
            Spill(dtype) if spill else np.empty(count, dtype=dtype)
            for dtype, spill in zip(dtypes, spilled, strict=True)
        ]
        done = 0
        carry = np.empty(0, dtype=np.int64)
        for text in self.number_blocks(key):
            values = _parse_ints(text, self.fail, key)
            if len(carry):
                values = np.concatenate([carry, values])
            whole = len(values) // width
            if done + whole > count:
                raise self.fail(f"more {key} than the header says")
            rows = values[: whole * width].reshape(whole, width)
            for i, column in enumerate(keep):
                part = rows[:, column]
                too_large = len(part) and int(part.max()) > np.iinfo(np.dtype(dtypes[i])).max
                if isinstance(out[i], Spill):
                    if too_large:  # V8 numbers names and ids in 32 bits
                        raise self.fail(f"a name or id in {key} is past 32 bits")
                    out[i].write(part)
                    continue
                if too_large:
                    out[i] = out[i].astype(np.int64)
                    dtypes[i] = "int64"
                out[i][done : done + whole] = part
            done += whole
            carry = values[whole * width :]
            del values, rows
        if done != count or len(carry):
            raise self.fail(f"{done} of {count} {key}")
        return [c.mapped(self.mapped) if isinstance(c, Spill) else c for c in out]

    def locations(self, fields: list[str], width: int) -> dict[int, tuple[int, int, int]]:
        """Return closure locations by node index: (script id, line, column), 0-based."""
        import numpy as np

        names = ("object_index", "script_id", "line", "column")
        if not fields or any(f not in fields for f in names):
            return {}
        parts = [_parse_ints(t, self.fail, "locations") for t in self.number_blocks("locations")]
        values = np.concatenate(parts) if parts else np.empty(0, dtype=np.int64)
        if len(values) % len(fields):
            raise self.fail("the locations section is cut short")
        rows = values.reshape(-1, len(fields))
        obj, script, line, column = (rows[:, fields.index(n)] for n in names)
        return {
            int(o) // width: (int(s), int(li), int(c))
            for o, s, li, c in zip(obj, script, line, column, strict=True)
        }

    def strings(self) -> StringTable:
        """Return the string table (the last section): names of nodes and edges, kept as the
        file's text in a `Spill`."""
        import numpy as np

        self.open_section("strings")
        spill = Spill("uint8")
        spill.write_bytes(self.buffer)
        self.buffer = b""
        while block := self.handle.read(BLOCK):
            spill.write_bytes(block)
        text = spill.mapped_bytes(self.mapped)
        end = text.rfind(b"]")
        if end < 0 or not text[end + 1 :].strip().startswith(b"}"):
            raise self.fail("the strings section is cut short")
        raw = np.frombuffer(text, dtype=np.uint8, count=end)
        quotes = np.flatnonzero(raw == ord('"'))
        slashed = quotes[(quotes > 0) & (raw[np.maximum(quotes - 1, 0)] == ord("\\"))]
        if len(slashed):  # a quote after backslashes is escaped when they are an odd number
            escaped = {int(q) for q in slashed.tolist() if _backslashes(text, int(q)) % 2}
            quotes = quotes[~np.isin(quotes, np.fromiter(escaped, dtype=np.int64))]
        if len(quotes) % 2:
            raise self.fail("the strings section is cut short")
        starts, ends = quotes[0::2] + 1, quotes[1::2]
        # Between two strings a comma, as V8 writes it (`","` or `",\n"`): else looked at
        # one by one, whitespace allowed anywhere.
        after = np.r_[starts[1:] - 1, end] - (ends + 1)
        usual = (raw[np.minimum(ends + 1, end - 1)] == ord(",")) & (after >= 1) & (after <= 2)
        usual[-1:] = after[-1:] == 0
        odd = np.flatnonzero(~usual | ((after == 2) & (raw[np.minimum(ends + 2, end - 1)] > 32)))
        for i in odd.tolist():
            gap = text[int(ends[i]) + 1 : int(ends[i]) + 1 + int(after[i])].strip()
            if gap != (b"" if i == len(ends) - 1 else b","):
                raise self.fail("the strings section is not a list of strings")
        if len(starts) and text[: int(starts[0]) - 1].strip():
            raise self.fail("the strings section is not a list of strings")
        width = np.uint32 if end < 2**32 else np.int64
        if isinstance(text, mmap.mmap):
            text.madvise(mmap.MADV_DONTNEED)  # read whole to find the quotes: not needed now
        return StringTable(text, starts.astype(width), ends.astype(width))


def spill(values: np.ndarray, mappings: list[mmap.mmap]) -> np.ndarray:
    """Return `values` written to a `Spill` and mapped back read-only (see `Spill`)."""
    out = Spill(str(values.dtype))
    out.write(values)
    return out.mapped(mappings)


class Spill:
    """A column written to an unlinked temporary file as it is read, then mapped read-only:
    only the pages read are in memory, and the kernel can drop them again. The file is gone
    once the last array mapped from it is."""

    def __init__(self, dtype: str) -> None:
        self.dtype = dtype
        # closed by `mapped_bytes`, once written
        self.file = tempfile.TemporaryFile(prefix="memdiag-heapsnapshot-")  # noqa: SIM115

    def write(self, values: np.ndarray) -> None:
        self.file.write(values.astype(self.dtype, copy=False).tobytes())

    def write_bytes(self, data: bytes) -> None:
        self.file.write(data)

    def mapped_bytes(self, mappings: list[mmap.mmap]) -> bytes | mmap.mmap:
        """Return the file mapped read-only, added to `mappings` (an empty file, which cannot
        be mapped, as b"")."""
        self.file.flush()
        size = self.file.tell()
        try:
            if not size:
                return b""
            mapping = mmap.mmap(self.file.fileno(), size, access=mmap.ACCESS_READ)
        finally:
            self.file.close()
        mappings.append(mapping)
        return mapping

    def mapped(self, mappings: list[mmap.mmap]) -> np.ndarray:
        """Return the values written, as a read-only array over the mapped file."""
        import numpy as np

        data = self.mapped_bytes(mappings)
        if not len(data):
            return np.empty(0, dtype=self.dtype)
        return np.frombuffer(data, dtype=self.dtype)


def _backslashes(text: bytes | mmap.mmap, at: int) -> int:
    """Return how many backslashes come right before position `at` of `text`."""
    count = 0
    while at - count > 0 and text[at - count - 1] == 0x5C:
        count += 1
    return count


class StringTable(Sequence[str]):
    """The snapshot's strings, kept as the file's text with the offsets of each: a string is
    decoded when it is asked for (a name in a path or a constructor), not the million at once.
    """

    def __init__(self, text: bytes | mmap.mmap, starts: np.ndarray, ends: np.ndarray) -> None:
        self._text, self._starts, self._ends = text, starts, ends

    def __len__(self) -> int:
        return len(self._starts)

    def __getitem__(self, index: Any) -> Any:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        raw = self._text[int(self._starts[index]) : int(self._ends[index])]
        if b"\\" not in raw:
            return raw.decode("utf-8", errors="replace")
        try:
            text: str = json.loads(b'"' + raw + b'"')
        except ValueError:  # a broken escape: the text as it stands
            return raw.decode("utf-8", errors="replace")
        return text


def _parse_ints(text: bytes, fail: Any, key: str) -> np.ndarray:
    """Return the comma-separated integers of `text` (newlines allowed) as int64.

    numpy refuses a value that is not a number, or stops there (the count then falls short).
    """
    import numpy as np

    text = text.strip()
    if not text:
        return np.empty(0, dtype=np.int64)
    try:
        return np.fromstring(text, dtype=np.int64, sep=",")
    except ValueError:
        raise fail(f"a value in {key} is not an integer") from None
