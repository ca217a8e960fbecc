"""Everything analysis derives from a sweep's runs, in one call."""

from __future__ import annotations

import dataclasses
import itertools
from typing import Any

from memdiag.analysis.aggregate import summarise
from memdiag.analysis.candidates import (
    Candidate,
    heap_view,
    measured_candidates,
    predicted_candidates,
    within_heap_limit,
)
from memdiag.analysis.hosts import host_warnings, summarise_hosts
from memdiag.analysis.matrix import build_matrix, reference_config
from memdiag.analysis.scaling import capacities, fit_scaling, predict, size_axes
from memdiag.analysis.search import search_all
from memdiag.analysis.sizes import next_size
from memdiag.analysis.variants import compare_variants
from memdiag.model import ConfigSummary, ScalingFit, Sweep
from memdiag.params import has_params, index_of, same_value


def analyse_sweep(sweep: Sweep) -> Sweep:
    """Return `sweep` with configs, matrix, scaling, variants, predictions, capacity and
    search recomputed.

    Pure: reads the runs and the settings stored in the sweep, never a process.
    """
    configs = summarise(sweep.runs, sweep.axes)
    fits = fit_scaling(configs, sweep.axes, sweep.size_axes, until=sweep.predict)
    at, decided, candidates, heap_refusals = decision_point(sweep, configs, fits)
    reference = {k: v for k, v in (sweep.reference or {}).items() if k not in at} or None
    matrix = build_matrix(
        decided,
        sweep.budgets_bytes,
        sweep.headroom,
        reference,
        at or None,
        candidates,
        confirm_runs=sweep.confirm_runs if sweep.confirm else None,
    )
    hosts = summarise_hosts(sweep.runs)
    analysed = dataclasses.replace(
        sweep,
        configs=configs,
        matrix=matrix,
        scaling=fits,
        variants=compare_variants(configs, sweep.axes),
        predictions=predict(fits, sweep.predict, sweep.budgets_bytes, sweep.headroom),
        capacity=capacities(fits, sweep.budgets_bytes, sweep.headroom),
        search=searches(sweep)[0],
        hosts=hosts,
        host_warnings=host_warnings(sweep.runs, sweep.axes, sweep.budgets_bytes, hosts),
        reference_config=reference_config(configs, matrix, sweep.axes, sweep.reference),
        heap_refusals=heap_refusals,
    )
    return dataclasses.replace(analysed, sizes_status=next_size(analysed)[1])


def decision_point(
    sweep: Sweep, configs: list[ConfigSummary], fits: list[ScalingFit]
) -> tuple[dict[str, Any], list[ConfigSummary], list[Candidate], list[str]]:
    """Return the decision size, the configs measured there (or nearest), the candidates, and
    the configurations refused for their V8 heap at `--at` (Node jobs under a heap limit).

    Sizes are given, not chosen: the decision holds for the largest input measured, or for
    the `--at` size, where each configuration's peak is predicted from its fit.
    """
    largest = {name: max(sweep.axes[name]) for name in size_axes(sweep.axes, sweep.size_axes)}
    at_axis = next(iter(sweep.predict), None)
    if at_axis is None or at_axis not in largest:
        decided = [c for c in configs if has_params(c.params, largest)]
        return largest, decided, measured_candidates(decided, fits), []
    value = sweep.predict[at_axis]
    at = {**largest, at_axis: int(value) if value == int(value) else value}
    others = {k: v for k, v in largest.items() if k != at_axis}
    group = [c for c in configs if has_params(c.params, others)]
    if index_of(sweep.axes[at_axis], value) is not None:
        decided = [c for c in group if same_value(c.params[at_axis], value)]
        return at, decided, measured_candidates(decided, fits), []
    decided = [c for c in group if same_value(c.params[at_axis], largest[at_axis])]
    candidates = predicted_candidates(group, fits, at_axis, value)
    heap_fits = fit_scaling(heap_view(group), sweep.axes, sweep.size_axes, until=sweep.predict)
    return at, decided, *within_heap_limit(candidates, heap_fits, at_axis, value)


def searches(sweep: Sweep) -> tuple[list[Any], list[tuple[dict[str, Any], int]]]:
    """Return the `--param NAME=auto` searches and the probes they still need."""
    if not sweep.auto:
        return [], []
    names = [k for k in sweep.axes if k not in sweep.auto]
    base = {k: v for k, v in sweep.base.items() if k not in sweep.auto}
    combos = [
        {**base, **dict(zip(names, values, strict=True))}
        for values in itertools.product(*(sweep.axes[n] for n in names))
    ]
    return search_all(sweep.runs, sweep.auto, combos, sweep.budgets_bytes, sweep.headroom)


def pending_confirmations(sweep: Sweep) -> list[tuple[dict[str, Any], int]]:
    """Return the confirmation runs the decisions still need: (params, limit = budget).

    One per configuration, under its smallest budget: an ok run there serves the larger.
    """
    if not sweep.confirm:
        return []
    wanted: dict[str, tuple[dict[str, Any], int]] = {}
    for row in analyse_sweep(sweep).matrix:
        pending = row.confirmation
        if pending and pending["status"] == "pending":
            key = repr(sorted(pending["params"].items()))
            wanted.setdefault(key, (pending["params"], pending["limit_bytes"]))
    return list(wanted.values())
