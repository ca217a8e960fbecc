"""Everything analysis derives from a sweep's runs, in one call."""

from __future__ import annotations

import dataclasses

from memdiag.analysis.aggregate import summarise
from memdiag.analysis.matrix import build_matrix
from memdiag.analysis.scaling import fit_scaling, predict
from memdiag.analysis.variants import compare_variants
from memdiag.model import Sweep


def analyse_sweep(sweep: Sweep) -> Sweep:
    """Return `sweep` with configs, matrix, scaling, variants and predictions recomputed.

    Pure: reads the runs and the settings stored in the sweep, never a process.
    """
    configs = summarise(sweep.runs, sweep.axes)
    fits = fit_scaling(configs, sweep.axes)
    return dataclasses.replace(
        sweep,
        configs=configs,
        matrix=build_matrix(configs, sweep.budgets_bytes, sweep.headroom, sweep.reference),
        scaling=fits,
        variants=compare_variants(configs, sweep.axes),
        predictions=predict(fits, sweep.predict, sweep.budgets_bytes, sweep.headroom),
    )
