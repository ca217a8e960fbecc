"""Deciding at production size, from hand-built runs: honest fits, worst cases, ties, search."""

from __future__ import annotations

import math
from typing import Any

import pytest

from memdiag.analysis.aggregate import summarise
from memdiag.analysis.matrix import build_matrix, confirm_status
from memdiag.analysis.scaling import bounds, fit_scaling, largest_fitting, predict
from memdiag.analysis.search import search_budget
from memdiag.analysis.sweep import analyse_sweep
from memdiag.model import Run, Status, Sweep

MB = 1024 * 1024


def run(
    peak_mb: float, wall: float = 1.0, records: int = 1000, status: Status = "ok", **params: Any
) -> Run:
    if "records_param" in params:
        params = {"records": params.pop("records_param"), **params}
    return Run(
        target="t",
        params=params,
        status=status,
        peak_rss_bytes=int(peak_mb * MB),
        wall_s=wall,
        cpu_s=wall,
        records=records,
        records_per_s=records / wall,
    )


def sized(peak_mb: float, n: int, wall: float = 1.0, **params: Any) -> Run:
    """A run at input size `n` (the records param and the records it processed)."""
    return run(peak_mb, wall=wall, records=n, records_param=n, **params)


def sweep_of(runs: list[Run], axes: dict[str, list[Any]], **settings: Any) -> Sweep:
    return analyse_sweep(Sweep(target="t", axes=axes, runs=runs, repeat=1, **settings))


def test_a_noisy_slope_is_constant_and_predicts_the_largest_peak() -> None:
    axes = {"records": [1000, 2000, 4000, 8000]}
    noisy = [60.4, 59.6, 60.9, 60.1]  # no trend, ±0.5 MB of noise
    configs = summarise([sized(p, n) for n, p in zip(axes["records"], noisy, strict=True)], axes)
    (fit,) = fit_scaling(configs, axes)
    assert fit.verdict == "constant" and fit.r2 is not None and fit.sizes == 4
    assert fit.slope_low is not None and fit.slope_low < 0 < (fit.slope_high or 0)
    (p,) = predict([fit], {"records": 220_000}, [512 * MB], 0.8)
    assert p.peak_rss_bytes == int(60.9 * MB)  # the largest measured, not a trend
    # its upper end allows the rise a constant verdict admits (5%)
    assert p.peak_high_bytes is not None and p.peak_high_bytes >= int(1.05 * p.peak_rss_bytes) - 1


def test_a_visible_rise_grows_even_when_three_sizes_cannot_exclude_zero() -> None:
    # A saturating curve (measured on the migration engine): 20% up across the sizes, but
    # with one degree of freedom the slope's interval still contains 0.
    axes = {"items": [500, 1000, 2000]}
    peaks = zip(axes["items"], [55.7, 60.6, 67.0], strict=True)
    runs = [run(p, records=n, items=n) for n, p in peaks]
    (fit,) = fit_scaling(summarise(runs, axes), axes)
    assert fit.slope_low is not None and fit.slope_low < 0
    assert fit.verdict == "grows"
    (p,) = predict([fit], {"items": 20_000}, [], 0.8)
    assert p.peak_rss_bytes > 120 * MB  # measured there: 123.5 MB


def test_a_negative_slope_never_predicts_below_what_was_measured() -> None:
    axes = {"records": [1000, 2000, 4000]}
    peaks = zip(axes["records"], [68, 66, 64], strict=True)
    configs = summarise([sized(p, n) for n, p in peaks], axes)
    (fit,) = fit_scaling(configs, axes)
    assert fit.bytes_per_unit < 0 and fit.verdict == "constant"
    (p,) = predict([fit], {"records": 220_000}, [512 * MB], 0.8)
    assert p.peak_rss_bytes >= 68 * MB and (p.peak_low_bytes or 0) <= p.peak_rss_bytes


def test_two_sizes_give_no_fit_quality_and_say_so() -> None:
    axes = {"records": [1000, 2000]}
    configs = summarise([sized(100, 1000), sized(200, 2000)], axes)
    (fit,) = fit_scaling(configs, axes)
    assert fit.r2 is None and fit.slope_low is None and fit.sizes == 2
    assert fit.verdict == "grows"
    (p,) = predict([fit], {"records": 4000}, [8192 * MB], 0.8)
    assert not p.firm and p.warning is not None and "2 sizes" in p.warning
    assert p.peak_rss_bytes == pytest.approx(400 * MB, rel=1e-3)


def test_a_line_predicts_with_an_interval_and_warns_far_out() -> None:
    axes = {"records": [1000, 2000, 4000]}
    peaks = [50 + n / 100 + d for n, d in zip(axes["records"], [0.3, -0.4, 0.2], strict=True)]
    runs = [sized(p, n) for n, p in zip(axes["records"], peaks, strict=True)]
    # repeats 2 MB apart
    runs += [sized(p + 2, n) for n, p in zip(axes["records"], peaks, strict=True)]
    (fit,) = fit_scaling(summarise(runs, axes), axes)
    assert fit.verdict == "grows" and fit.repeat_sd_bytes > MB
    low, high = bounds(fit, 8000)[1:]
    assert low < fit.intercept_bytes + fit.bytes_per_unit * 8000 < high
    (far,) = predict([fit], {"records": 220_000}, [], 0.8)
    assert not far.firm and "55×" in (far.warning or "") and "3 more size(s)" in (far.warning or "")
    (near,) = predict([fit], {"records": 30_000}, [], 0.8)
    assert near.firm and near.warning is None
    assert (near.peak_high_bytes or 0) - near.peak_rss_bytes > 2 * MB  # repeats widen it
    # on an exact line the interval comes from the repeats' spread alone
    exact = [sized(50 + n / 100, n) for n in axes["records"]]
    spread = exact + [sized(52 + n / 100, n) for n in axes["records"]]
    (tight,) = fit_scaling(summarise(exact, axes), axes)
    (wide,) = fit_scaling(summarise(spread, axes), axes)
    tight_low, tight_high = bounds(tight, 8000)[1:]
    wide_low, wide_high = bounds(wide, 8000)[1:]
    assert tight_high - tight_low < 0.01 * MB and wide_high - wide_low > 4 * MB


def test_capacity_reads_the_upper_bound_and_constant_has_no_limit() -> None:
    axes = {"records": [1000, 2000, 4000], "variant": ["grow", "flat"]}
    runs = [sized(40 + n / 100, n, variant="grow") for n in axes["records"]]
    runs += [sized(40.0, n, variant="flat") for n in axes["records"]]
    grow, flat = fit_scaling(summarise(runs, axes), axes)
    largest = largest_fitting(grow, 400 * MB)
    assert largest is not None and 35_000 < largest <= 36_000  # 40 MB + n/100 MB = 400 MB
    assert bounds(grow, largest)[2] <= 400 * MB < bounds(grow, largest + 1)[2]
    assert largest_fitting(flat, 400 * MB) is None
    assert largest_fitting(flat, 30 * MB) == 0


def grid(per_record: dict[str, float], speed: dict[str, float], sizes: list[int]) -> list[Run]:
    """Two variants at three sizes: peak 50 MB + per_record × n, wall n / speed."""
    return [
        run(50 + per_record[v] * n / MB, wall=n / speed[v], records=n, variant=v)
        for v in per_record
        for n in sizes
    ]


def decide_at(runs: list[Run], budget_mb: int, at: float) -> Any:
    axes = {"variant": sorted({r.params["variant"] for r in runs}), "records": [1000, 2000, 4000]}
    for r in runs:
        r.params = {"variant": r.params["variant"], "records": r.records}
    sweep = sweep_of(runs, axes, budgets_bytes=[budget_mb * MB], predict={"records": at})
    (row,) = sweep.matrix
    return row


def test_grows_but_fits_at_the_production_size_is_chosen_when_fastest() -> None:
    runs = grid({"grow": 1000, "flat": 0}, {"grow": 3000, "flat": 1000}, [1000, 2000, 4000])
    row = decide_at(runs, 2048, 220_000)  # grow: 50 MB + 210 MB at 220k, fits 1.6 GB
    assert row.config == {"params": {"variant": "grow", "records": 220_000}}
    assert row.basis == "predicted" and row.at == {"records": 220_000}
    assert row.peak_upper_bytes >= row.peak_rss_bytes > 250 * MB
    assert row.capacity["axis"] == "records" and row.capacity["largest_fitting"] > 220_000


def test_fits_at_test_size_but_not_at_production_is_never_chosen() -> None:
    runs = grid({"grow": 10_000, "flat": 0}, {"grow": 3000, "flat": 1000}, [1000, 2000, 4000])
    # At 4000 records grow peaks at 88 MB, far under 409 MB; at 220k it needs 2.1 GB.
    row = decide_at(runs, 512, 220_000)
    assert row.config == {"params": {"variant": "flat", "records": 220_000}}
    measured = decide_at(
        grid({"grow": 10_000, "flat": 0}, {"grow": 3000, "flat": 1000}, [1000, 2000, 4000]),
        512,
        4000,
    )
    assert measured.config["params"]["variant"] == "grow" and measured.basis == "measured"


def test_without_at_a_growing_choice_says_how_far_it_fits() -> None:
    runs = grid({"grow": 1000, "flat": 0}, {"grow": 3000, "flat": 1000}, [1000, 2000, 4000])
    for r in runs:
        r.params = {"variant": r.params["variant"], "records": r.records}
    axes = {"variant": ["flat", "grow"], "records": [1000, 2000, 4000]}
    (row,) = sweep_of(runs, axes, budgets_bytes=[512 * MB]).matrix
    assert row.config == {"params": {"variant": "grow", "records": 4000}}
    assert row.note is not None and "fits up to" in row.note and "records" in row.note


def test_an_outlier_repeat_decides_the_budget_not_the_median() -> None:
    axes = {"batch": [10, 20]}
    runs = [run(p, wall=1, batch=10) for p in (300, 310, 900)]  # fast, one bad repeat
    runs += [run(200, wall=2, batch=20) for _ in range(3)]
    configs = summarise(runs, axes)
    (row,) = build_matrix(configs, [512 * MB], 0.8)
    assert configs[0].peak_rss_bytes == 310 * MB  # the median would fit 409.6 MB
    assert row.config == {"params": {"batch": 20}}
    (big,) = build_matrix(configs, [2048 * MB], 0.8)
    assert big.config == {"params": {"batch": 10}} and big.peak_upper_bytes == 900 * MB


def test_speed_inside_the_noise_is_a_tie_won_by_the_lower_peak() -> None:
    axes = {"batch": [10, 20]}
    one = summarise([run(300, wall=1.0, batch=10), run(100, wall=1.03, batch=20)], axes)
    (row,) = build_matrix(one, [1024 * MB], 0.8)
    assert row.config == {"params": {"batch": 20}}  # 3% faster with one repeat: a tie
    assert row.note is not None and "tie within noise" in row.note
    clear = summarise([run(300, wall=1.0, batch=10), run(100, wall=1.2, batch=20)], axes)
    (row,) = build_matrix(clear, [1024 * MB], 0.8)
    assert row.config == {"params": {"batch": 10}} and row.note is None
    # with repeats, the repeats' spread is the noise: 10% faster but they spread by 30%
    spread = [run(300, wall=w, batch=10) for w in (0.8, 1.0, 1.1)]
    spread += [run(100, wall=w, batch=20) for w in (1.0, 1.1, 1.2)]
    (row,) = build_matrix(summarise(spread, axes), [1024 * MB], 0.8)
    assert row.config == {"params": {"batch": 20}}


def test_the_matrix_does_not_flip_on_noise() -> None:
    axes = {"batch": [10, 20]}
    chosen = set()
    for jitter in (-0.02, -0.01, 0.0, 0.01, 0.02):  # the same sweep, re-run
        runs = [run(300, wall=1.0 + jitter, batch=10), run(100, wall=1.0 - jitter, batch=20)]
        (row,) = build_matrix(summarise(runs, axes), [1024 * MB], 0.8)
        chosen.add(row.config["params"]["batch"] if row.config else None)
    assert chosen == {20}


def test_a_refuted_decision_falls_back_to_the_next_candidate() -> None:
    axes = {"batch": [10, 20]}
    configs = summarise([run(100, wall=1, batch=10), run(120, wall=2, batch=20)], axes)
    oom = run(400, status="oom", batch=10)
    oom.limit_bytes = 512 * MB
    (row,) = build_matrix(configs, [512 * MB], 0.8, confirm_runs=[oom])
    assert row.config == {"params": {"batch": 20}}
    assert row.confirmation == {
        "status": "pending",
        "params": {"batch": 20},
        "limit_bytes": 512 * MB,
    }
    assert [r["params"] for r in row.refuted] == [{"batch": 10}]
    ok = run(130, batch=20)
    (row,) = build_matrix(configs, [512 * MB], 0.8, confirm_runs=[oom, ok])
    assert row.confirmation is not None and row.confirmation["status"] == "confirmed"
    lower = run(400, status="oom", batch=10)
    lower.limit_bytes = 256 * MB  # stopped under a smaller budget: says nothing here
    assert confirm_status({"batch": 10}, 512 * MB, 0.8, [lower])["status"] == "pending"


def simulate_search(
    peak: Any, budgets: list[int], start: int = 1, maximum: int = 4096
) -> tuple[list[int | None], list[Run]]:
    """Run the search on a job whose peak is `peak(value)` bytes, budgets smallest first."""
    runs: list[Run] = []
    found = []
    for budget in budgets:
        while True:
            result, value = search_budget(runs, "batch", {}, budget, 0.8, start, maximum)
            if value is None:
                break
            limit = result.limit_bytes
            p = peak(value)
            probe = run(min(p, limit + 1) / MB, status="ok" if p <= limit else "oom", batch=value)
            probe.limit_bytes = limit
            runs.append(probe)
        found.append(result.largest_fitting)
    return found, runs


def test_search_finds_a_known_line_in_fewer_runs_than_a_grid() -> None:
    def peak(batch: int) -> int:
        return 12 * MB + batch * 300 * 1024  # 300 KB per batch unit

    budgets = [128 * MB, 512 * MB, 1024 * MB]
    found, runs = simulate_search(peak, budgets)
    exact = [math.floor((0.8 * b - 12 * MB) / (300 * 1024)) for b in budgets]
    for f, e in zip(found, exact, strict=True):
        assert f is not None and abs(f - e) <= max(1, 0.02 * e)
    assert len(runs) <= math.log2(4096) + 6  # a 1-unit grid over 1..4096 needs 4096 runs


def test_search_converges_on_a_curve_the_line_misjudges() -> None:
    def peak(batch: int) -> int:
        return int(10 * MB + 2000 * batch**1.5)  # convex: the local line undershoots

    found, runs = simulate_search(peak, [64 * MB, 256 * MB])
    for f, budget in zip(found, [64 * MB, 256 * MB], strict=True):
        assert f is not None and peak(f) <= 0.8 * budget
        assert peak(math.ceil(f * 1.02) + 1) > 0.8 * budget
    assert len(runs) <= 2 * (math.log2(4096) + 4)


def test_search_stops_at_the_max_and_when_nothing_fits() -> None:
    found, _ = simulate_search(lambda b: 10 * MB, [512 * MB], maximum=100)
    assert found == [100]
    found, runs = simulate_search(lambda b: 900 * MB, [512 * MB])
    assert found == [None] and len(runs) == 1
