"""The machines a sweep ran on: summaries, caveats, and every text renderer showing them."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from memdiag.analysis.hosts import alike, host_warnings, summarise_hosts
from memdiag.analysis.sweep import analyse_sweep
from memdiag.measure.process.env import collect_env
from memdiag.model import Run, Sweep, load_sweep
from memdiag.render.html import HtmlRenderer
from memdiag.render.markdown import MarkdownRenderer
from memdiag.render.report import save_results
from memdiag.render.terminal import TerminalRenderer

GB = 1024**3
MB = 1024**2


def host(name: str, cpus: int = 8, memory: int = 32 * GB, **more: Any) -> dict[str, Any]:
    return {"name": name, "cpus": cpus, "cpu_model": "EPYC 7B13", "memory_bytes": memory,
            "memory_limit_bytes": None, "python": "3.11.7", "memdiag": "0.1.0", **more}  # fmt: skip


def run(batch: int, on: dict[str, Any] | None, wall: float = 2.0) -> Run:
    return Run(
        target="import",
        params={"batch": batch},
        status="ok",
        peak_rss_bytes=(100 + batch) * MB,
        wall_s=wall,
        cpu_s=wall,
        records=1000,
        records_per_s=1000 / wall,
        env={"host": on} if on else {},
    )


def sweep(runs: list[Run], budgets: list[int], cluster: str | None = "tcp://s:8786") -> Sweep:
    plan = Sweep(target="import", axes={"batch": [10, 50]}, repeat=2, runs=runs,
                 budgets_bytes=budgets, cluster=cluster)  # fmt: skip
    return analyse_sweep(plan)


def test_hosts_are_counted_per_machine() -> None:
    a, b = host("w-a"), host("w-b")
    hosts = summarise_hosts([run(10, a), run(50, b), run(10, a), run(50, None)])
    assert [(h.name, h.runs) for h in hosts] == [("w-a", 2), ("w-b", 1)]
    assert hosts[0].memory_bytes == 32 * GB and hosts[0].cpu_model == "EPYC 7B13"


def test_like_machines_differ_only_a_little_in_memory() -> None:
    [a, b, c, d] = summarise_hosts(
        [
            run(10, host("a")),
            run(10, host("b", memory=31 * GB)),
            run(10, host("c", cpus=4)),
            run(10, host("d", memory=16 * GB)),
        ]
    )
    assert alike(a, b)
    assert not alike(a, c) and not alike(a, d)


def test_repeats_on_unlike_machines_are_named() -> None:
    big, small = host("big"), host("small", cpus=2, memory=8 * GB)
    runs = [run(10, big), run(10, small, wall=5.0), run(50, big), run(50, big)]
    warnings = host_warnings(runs, {"batch": [10, 50]}, [], summarise_hosts(runs))
    assert len(warnings) == 1
    assert "batch=10 on big, small" in warnings[0] and "batch=50" not in warnings[0]
    # like machines under different names are no reason to warn
    twins = [run(10, host("a")), run(10, host("b"))]
    assert host_warnings(twins, {"batch": [10, 50]}, [], summarise_hosts(twins)) == []


def test_a_budget_above_a_machines_memory_is_named() -> None:
    runs = [
        run(10, host("roomy")),
        run(10, host("boxed", memory_limit_bytes=4 * GB)),
        run(50, host("small", memory=2 * GB)),
    ]
    hosts = summarise_hosts(runs)
    warnings = host_warnings(runs, {"batch": [10, 50]}, [1 * GB, 3 * GB, 8 * GB], hosts)
    budget_notes = [w for w in warnings if w.startswith("The budget")]
    assert len(budget_notes) == 2
    assert "3.00 GB" in budget_notes[0] and "small" in budget_notes[0]
    assert "boxed" not in budget_notes[0] and "roomy" not in budget_notes[0]
    assert "8.00 GB" in budget_notes[1] and "boxed (4.00 GB)" in budget_notes[1]
    assert "roomy" not in budget_notes[1]


def terminal(s: Sweep) -> str:
    buffer = io.StringIO()
    TerminalRenderer(Console(file=buffer, width=250)).sweep(s)
    return buffer.getvalue()


@pytest.mark.parametrize(
    "render", [terminal, lambda s: MarkdownRenderer().sweep(s), lambda s: HtmlRenderer().sweep(s)]
)
def test_every_report_shows_the_hosts_and_the_warnings(render: Any) -> None:
    runs = [run(10, host("w-big")), run(10, host("w-small", cpus=2, memory=4 * GB))]
    runs += [run(50, host("w-big")), run(50, host("w-big"))]
    text = render(sweep(runs, [8 * GB]))
    for expected in ("Hosts", "w-big", "w-small", "tcp://s:8786", "unlike machines"):
        assert expected in text, expected
    assert "exceeds the memory of w-small (4.00 GB)" in text


def test_a_local_sweep_on_one_machine_has_no_hosts_table() -> None:
    runs = [run(10, host("here")), run(50, host("here"))]
    text = MarkdownRenderer().sweep(sweep(runs, [1 * GB], cluster=None))
    assert "## Hosts" not in text and "unlike machines" not in text


def test_hosts_survive_the_saved_file(tmp_path: Path) -> None:
    runs = [run(10, collect_env()["host"]), run(50, host("w-b"))]
    saved = load_sweep(save_results(sweep(runs, [1 * GB]), tmp_path))
    assert [h.name for h in saved.hosts] == [runs[0].env["host"]["name"], "w-b"]
    assert saved.cluster == "tcp://s:8786"
    assert saved.runs[0].env["host"]["memory_bytes"] > 0


def test_this_machine_is_recorded() -> None:
    here = collect_env()["host"]
    assert here["name"] and here["cpus"] >= 1 and here["memory_bytes"] > 100 * MB
    assert here["python"].count(".") == 2 and here["memdiag"]
