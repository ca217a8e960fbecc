"""Analysis of a sweep from hand-built runs: medians, the decision matrix, scaling, variants."""

from __future__ import annotations

from typing import Any

import pytest

from memdiag.analysis.aggregate import summarise
from memdiag.analysis.matrix import build_matrix, match_reference
from memdiag.analysis.scaling import fit_scaling, predict
from memdiag.analysis.sweep import analyse_sweep
from memdiag.analysis.variants import compare_variants
from memdiag.errors import MemdiagError
from memdiag.model import Run, RunError, Status, Sweep

MB = 1024 * 1024


def run(
    peak_mb: float,
    wall: float = 1.0,
    records: int | None = 1000,
    status: Status = "ok",
    params: dict[str, Any] | None = None,
    **more: Any,
) -> Run:
    return Run(
        target="t",
        params={**(params or {}), **more},
        status=status,
        peak_rss_bytes=int(peak_mb * MB),
        wall_s=wall,
        cpu_s=wall,
        records=records,
        records_per_s=records / wall if records else None,
        error=RunError("ValueError", "boom") if status == "error" else None,
    )


def test_medians_and_spread_over_repeats() -> None:
    axes = {"batch": [10, 20]}
    runs = [run(100, 1, batch=10), run(140, 3, batch=10), run(120, 2, batch=10)]
    runs += [run(50, 1, batch=20, status="error")]
    first, second = summarise(runs, axes)
    assert first.peak_rss_bytes == 120 * MB and first.peak_rss_spread == [100 * MB, 140 * MB]
    assert first.wall_s == 2 and first.records_per_s == 500
    assert first.status == "ok" and first.runs == 3
    assert second.status == "error" and second.error == "ValueError: boom"


def test_one_failed_repeat_makes_the_config_a_failure() -> None:
    axes = {"batch": [10]}
    (config,) = summarise([run(10, batch=10), run(10, batch=10, status="timeout")], axes)
    assert config.status == "timeout" and config.peak_rss_bytes == 10 * MB


def configs_for(points: list[tuple[int, float, float]]) -> list[Any]:
    """(batch, peak MB, wall s) per config, 1000 records each."""
    return summarise(
        [run(p, w, batch=b) for b, p, w in points], {"batch": [b for b, _, _ in points]}
    )


def test_matrix_picks_fastest_that_fits_each_budget() -> None:
    configs = configs_for([(10, 100, 10), (50, 300, 4), (100, 700, 2), (500, 3000, 1)])
    rows = build_matrix(configs, [512 * MB, 1024 * MB, 2048 * MB, 8192 * MB], 0.8)
    chosen = [r.config["params"]["batch"] if r.config else None for r in rows]
    assert chosen == [50, 100, 100, 500]
    first = rows[0]
    assert first.peak_rss_bytes == 300 * MB
    assert first.budget_fraction == pytest.approx(300 / 512, abs=1e-4)
    assert first.peak_change == pytest.approx(2.0) and first.slowdown == pytest.approx(0.4)


def test_matrix_tie_goes_to_the_lower_peak() -> None:
    configs = configs_for([(10, 300, 2), (20, 200, 2), (30, 250, 2)])
    (row,) = build_matrix(configs, [1024 * MB], 0.8)
    assert row.config == {"params": {"batch": 20}}


def test_matrix_says_when_nothing_fits() -> None:
    configs = configs_for([(10, 450, 2), (20, 900, 1)])
    (row,) = build_matrix(configs, [512 * MB], 0.8)
    assert row.config is None
    assert row.smallest is not None and row.smallest["params"] == {"batch": 10}
    assert row.over_bytes == int(450 * MB - 0.8 * 512 * MB)


def test_matrix_uses_wall_time_without_records_and_skips_failures() -> None:
    runs = [run(100, 5, None, batch=10), run(110, 3, None, batch=20)]
    runs += [run(120, 1, None, status="oom", batch=30)]
    configs = summarise(runs, {"batch": [10, 20, 30]})
    (row,) = build_matrix(configs, [1024 * MB], 0.8, reference={"batch": 20})
    assert row.config == {"params": {"batch": 20}}
    assert row.slowdown == 1.0 and row.peak_change == 0.0


def test_reference_must_name_axis_values() -> None:
    axes = {"batch": [10, 20]}
    assert match_reference(axes, {"batch": 20}) == {"batch": 20}
    with pytest.raises(MemdiagError, match="not an axis"):
        match_reference(axes, {"size": 1})
    with pytest.raises(MemdiagError, match="not among the values"):
        match_reference(axes, {"batch": 30})


def test_scaling_tells_streaming_from_accumulating() -> None:
    axes = {"records": [1000, 5000, 10000], "variant": ["accumulate", "stream"]}
    runs = []
    for n in axes["records"]:
        runs.append(run(50 + n * 0.01, records=n, params={"records": n, "variant": "accumulate"}))
        runs.append(run(50.2, records=n, params={"records": n, "variant": "stream"}))
    fits = fit_scaling(summarise(runs, axes), axes)
    by_variant = {f.params["variant"]: f for f in fits}
    grows, flat = by_variant["accumulate"], by_variant["stream"]
    assert grows.verdict == "grows" and flat.verdict == "constant"
    assert grows.bytes_per_unit == pytest.approx(0.01 * MB, rel=1e-3)
    assert grows.r2 == pytest.approx(1.0)
    (prediction, _) = predict(fits, {"records": 100_000}, [512 * MB, 2048 * MB], 0.8)
    assert prediction.peak_rss_bytes == pytest.approx((50 + 1000) * MB, rel=1e-3)
    assert prediction.fits_budgets == [2048 * MB]


def test_variants_side_by_side_against_the_acceptance() -> None:
    axes = {"batch": [10, 20], "variant": ["accumulate", "stream"]}
    runs = [
        run(400, 1, batch=10, variant="accumulate"),
        run(100, 1.5, batch=10, variant="stream"),
        run(400, 1, batch=20, variant="accumulate"),
        run(350, 3, batch=20, variant="stream"),
    ]
    pairs = compare_variants(summarise(runs, axes), axes)
    assert [(p.params, p.meets) for p in pairs] == [({"batch": 10}, True), ({"batch": 20}, False)]
    assert pairs[0].peak_reduction == 0.75 and pairs[0].slowdown == 1.5


def test_analyse_sweep_round_trips_through_json() -> None:
    sweep = Sweep(
        target="t",
        axes={"batch": [10, 20]},
        budgets_bytes=[512 * MB],
        runs=[run(100, batch=10), run(200, 0.5, batch=20)],
    )
    done = analyse_sweep(sweep)
    again = Sweep.from_dict(done.to_dict())
    assert again == done
    assert done.matrix[0].config == {"params": {"batch": 20}}


def test_sizes_are_given_not_chosen() -> None:
    # A bigger input runs faster per record here, yet the matrix must not "choose" it: it
    # decides among page sizes at the largest input. page_size is numeric but a knob.
    runs = [
        run(
            40 + page / 10 + records / 100,
            wall=records / (500 + page),
            records=records,
            params={"page_size": page, "records": records},
        )
        for page in (10, 50)
        for records in (1000, 4000)
    ]
    axes: dict[str, list[Any]] = {"page_size": [10, 50], "records": [1000, 4000]}
    sweep = analyse_sweep(Sweep(target="t", axes=axes, budgets_bytes=[1024 * MB], runs=runs))
    assert [f.axis for f in sweep.scaling] == ["records", "records"]
    (row,) = sweep.matrix
    assert row.at == {"records": 4000}
    assert row.config == {"params": {"page_size": 50, "records": 4000}}
    declared = analyse_sweep(
        Sweep(target="t", axes=axes, budgets_bytes=[1024 * MB], runs=runs, size_axes=["page_size"])
    )
    assert {f.axis for f in declared.scaling} == {"records", "page_size"}
    assert declared.matrix[0].at == {"page_size": 50, "records": 4000}
