"""Draws a leak's reference chain as a PNG, through graphviz's `dot`.

The chain is the report's own (`Chain`: a root, then each hop as code and its type): from
the module global, class attribute or thread that holds it, down to one leaking object.
Drawn from that JSON alone, so no live object and no walk of the heap is needed, and the
edges read as the code that follows them (`.SERVICE`, `.processed_records`, `['progress']`).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

from memdiag.model.leaks import LeakReport

# Longer labels are cut: a key of a few hundred characters says no more than its start.
LABEL_CHARS = 48
DOT_TIMEOUT_S = 30.0


def draw_chains(report: LeakReport, out: Path) -> None:
    """Draw every site's and type's chain to `out/chain-site-N.png`, `chain-type-N.png`
    and set its `png`; nothing when graphviz is not installed."""
    if shutil.which("dot") is None:
        return
    chains = [("site", n, s.chain) for n, s in enumerate(report.sites, start=1)]
    chains += [("type", n, t.chain) for n, t in enumerate(report.types, start=1)]
    for kind, number, chain in chains:
        if chain and chain.get("hops"):
            chain["png"] = draw_chain(chain, out / f"chain-{kind}-{number}.png")


def draw_chain(chain: dict[str, Any], png: Path) -> str | None:
    """Return the path of the PNG drawn of `chain`, None when `dot` failed."""
    png.parent.mkdir(parents=True, exist_ok=True)
    try:
        done = subprocess.run(
            ["dot", "-Tpng", "-o", str(png)],
            input=chain_dot(chain),
            text=True,
            capture_output=True,
            timeout=DOT_TIMEOUT_S,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return str(png) if done.returncode == 0 and png.exists() else None


def chain_dot(chain: dict[str, Any]) -> str:
    """Return the chain in graphviz's language: one box per object, root first, each edge
    labelled with the code that follows it."""
    hops = chain["hops"]
    lines = [
        "digraph chain {",
        '  graph [rankdir=TB, nodesep=0.3, ranksep=0.35, bgcolor="white"];',
        '  node [shape=box, style="rounded,filled", fillcolor="#e8eef8", color="#4a6fa5",'
        ' fontname="Helvetica", fontsize=11];',
        '  edge [color="#4a6fa5", fontname="Helvetica", fontsize=10];',
    ]
    root = f"{chain['root']}\\n{_quoted(hops[0]['via'])}"
    lines.append(f'  n0 [label="{root}", fillcolor="#d5e8d4", color="#5a8a50"];')
    for index, hop in enumerate(hops[1:], start=1):
        items = hop.get("items")
        label = _quoted(hop["type"])
        if items is not None and hop["type"] not in ("str", "bytes"):
            label += f"\\n{items:,} items"
        last = index == len(hops) - 1
        colours = ', fillcolor="#f8d7d3", color="#b04a3f"' if last else ""
        lines.append(f'  n{index} [label="{label}"{colours}];')
        lines.append(f'  n{index - 1} -> n{index} [label=" {_quoted(hop["via"])}"];')
    lines.append("}")
    return "\n".join(lines) + "\n"


def _quoted(text: str) -> str:
    """Return `text` cut to LABEL_CHARS and escaped for a quoted graphviz label."""
    if len(text) > LABEL_CHARS:
        text = text[: LABEL_CHARS - 1] + "…"
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
