"""A leak's chain drawn from the report's JSON alone: every hop's code on its edge, quotes
and long keys safe in graphviz's language, and a real PNG where `dot` is installed."""

from __future__ import annotations

import shutil
from pathlib import Path

from memdiag.render.chain_png import LABEL_CHARS, chain_dot, draw_chain

CHAIN = {
    "root": "module global",
    "expression": "jobs.CACHE['say \"hi\"\\\\'].items",
    "hops": [
        {"via": "jobs", "type": "module"},
        {"via": ".CACHE", "type": "dict", "items": 12000},
        {"via": "['say \"hi\"\\\\']", "type": "jobs.Entry", "items": None},
        {"via": "[" + "k" * 200 + "]", "type": "list", "items": 3},
        {"via": "[0]", "type": "str", "items": 40},
    ],
}


def test_every_hop_is_a_box_and_its_code_the_edge_label() -> None:
    dot = chain_dot(CHAIN)
    assert dot.startswith("digraph chain {") and dot.rstrip().endswith("}")
    assert 'n0 [label="module global\\njobs"' in dot
    assert '-> n1 [label=" .CACHE"]' in dot and "dict\\n12,000 items" in dot
    assert "list\\n3 items" in dot
    assert 'n4 [label="str", fillcolor="#f8d7d3"' in dot  # the leaking object, marked
    # A quote and a backslash in a key are escaped; a long key is cut.
    assert "['say \\\"hi\\\"\\\\\\\\']" in dot
    assert "k" * (LABEL_CHARS - 2) + "…" in dot and "k" * LABEL_CHARS not in dot


def test_the_png_is_drawn_where_graphviz_is_installed(tmp_path: Path) -> None:
    png = tmp_path / "chain.png"
    drawn = draw_chain(CHAIN, png)
    if shutil.which("dot") is None:
        assert drawn is None
    else:
        assert drawn == str(png) and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
