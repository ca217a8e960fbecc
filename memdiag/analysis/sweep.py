"""Everything analysis derives from a sweep's runs, in one call."""

from __future__ import annotations

import dataclasses

from memdiag.analysis.aggregate import summarise
from memdiag.analysis.hosts import host_warnings, summarise_hosts
from memdiag.analysis.matrix import build_matrix
from memdiag.analysis.scaling import fit_scaling, predict, size_axes
from memdiag.analysis.variants import compare_variants
from memdiag.model import Sweep


def analyse_sweep(sweep: Sweep) -> Sweep:
    """Return `sweep` with configs, matrix, scaling, variants and predictions recomputed.

    Pure: reads the runs and the settings stored in the sweep, never a process.
    """
    configs = summarise(sweep.runs, sweep.axes)
    fits = fit_scaling(configs, sweep.axes, sweep.size_axes)
    # The decision holds for the hardest input measured: sizes are given, not chosen.
    at = {name: max(sweep.axes[name]) for name in size_axes(sweep.axes, sweep.size_axes)}
    largest = [c for c in configs if all(c.params.get(k) == v for k, v in at.items())]
    reference = {k: v for k, v in (sweep.reference or {}).items() if k not in at} or None
    hosts = summarise_hosts(sweep.runs)
    return dataclasses.replace(
        sweep,
        configs=configs,
        matrix=build_matrix(largest, sweep.budgets_bytes, sweep.headroom, reference, at or None),
        scaling=fits,
        variants=compare_variants(configs, sweep.axes),
        predictions=predict(fits, sweep.predict, sweep.budgets_bytes, sweep.headroom),
        hosts=hosts,
        host_warnings=host_warnings(sweep.runs, sweep.axes, sweep.budgets_bytes, hosts),
    )
