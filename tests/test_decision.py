"""Deciding at production size, from hand-built runs: honest fits, worst cases, ties, search."""

from __future__ import annotations

import math
from typing import Any

import pytest

from memdiag.analysis.aggregate import summarise
from memdiag.analysis.matrix import build_matrix, confirm_status
from memdiag.analysis.scaling import bounds, fit_scaling, largest_fitting, noise_floor, predict
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
    assert p.peak_high_bytes is not None
    assert int(1.05 * p.peak_rss_bytes) - 1 <= p.peak_high_bytes <= 1.1 * p.peak_rss_bytes


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
    # measured there: 123.5 MB; the line through the three sizes says 200 MB
    assert 120 * MB < p.peak_rss_bytes < 2 * 123.5 * MB


def test_a_negative_slope_never_predicts_below_what_was_measured() -> None:
    axes = {"records": [1000, 2000, 4000]}
    peaks = zip(axes["records"], [68, 66, 64], strict=True)
    configs = summarise([sized(p, n) for n, p in peaks], axes)
    (fit,) = fit_scaling(configs, axes)
    assert fit.bytes_per_unit < 0 and fit.verdict == "constant"
    (p,) = predict([fit], {"records": 220_000}, [512 * MB], 0.8)
    assert 68 * MB <= p.peak_rss_bytes <= 68.5 * MB  # the largest measured, not the trend
    assert (p.peak_low_bytes or 0) <= p.peak_rss_bytes


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
    axes = {"records": [1000, 2000, 4000, 8000]}
    noise = [0.3, -0.4, 0.2, -0.1]
    peaks = [50 + n / 100 + d for n, d in zip(axes["records"], noise, strict=True)]
    runs = [sized(p, n) for n, p in zip(axes["records"], peaks, strict=True)]
    # repeats 2 MB apart
    runs += [sized(p + 2, n) for n, p in zip(axes["records"], peaks, strict=True)]
    (fit,) = fit_scaling(summarise(runs, axes), axes)
    assert fit.verdict == "grows" and fit.model == "linear" and fit.repeat_sd_bytes > MB
    low, high = bounds(fit, 16000)[1:]
    assert low < fit.intercept_bytes + fit.bytes_per_unit * 16000 < high
    (far,) = predict([fit], {"records": 220_000}, [], 0.8)
    assert not far.firm and "28×" in (far.warning or "") and "2 more size(s)" in (far.warning or "")
    (near,) = predict([fit], {"records": 30_000}, [], 0.8)
    assert near.firm and near.warning is None
    assert (near.peak_high_bytes or 0) - near.peak_rss_bytes > 2 * MB  # repeats widen it
    # with 3 sizes the same growth is not firm: a curve cannot be told from the line
    three = {"records": axes["records"][:3]}
    (short,) = fit_scaling(summarise([r for r in runs if r.params["records"] < 8000], three), three)
    (guess,) = predict([short], {"records": 30_000}, [], 0.8)
    assert not guess.firm and "3 sizes" in (guess.warning or "")
    # on an exact line the interval comes from the repeats' spread, never below the noise of
    # one RSS measurement (0.2% of the peak: 0.26 MB here, ±0.7 MB at 8000)
    exact = [sized(50 + n / 100, n) for n in axes["records"]]
    spread = exact + [sized(52 + n / 100, n) for n in axes["records"]]
    (tight,) = fit_scaling(summarise(exact, axes), axes)
    (wide,) = fit_scaling(summarise(spread, axes), axes)
    tight_low, tight_high = bounds(tight, 8000)[1:]
    wide_low, wide_high = bounds(wide, 8000)[1:]
    floor = noise_floor(tight)
    assert floor == pytest.approx(0.002 * tight.peak_max_bytes)
    assert 2 * 1.96 * floor <= tight_high - tight_low < 2 * 1.96 * 1.5 * floor
    assert wide_high - wide_low > 4 * MB


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
    # 50 MB + 1,000 B × 220,000 = 259.8 MB, on an exact line
    assert 1.05 * row.peak_rss_bytes >= row.peak_upper_bytes >= row.peak_rss_bytes
    assert 255 * MB < row.peak_rss_bytes < 265 * MB
    # (0.8 × 2 GB − 50 MB) / 1,000 B = 1,665,559 records
    assert row.capacity["axis"] == "records"
    assert 1_600_000 < row.capacity["largest_fitting"] <= 1_665_559


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
    # 1, 2, 4 doubling; then per budget one jump to the line's value and one unit above it
    values = [r.params["batch"] for r in runs]
    assert values == [1, 2, 4, *(v for e in exact for v in (e, e + 1))]


def test_search_jumps_once_three_probes_trust_the_line() -> None:
    def peak(batch: int) -> int:
        return 50 * MB + batch * 200  # the boundary of 1 GB is past four million

    found, runs = simulate_search(peak, [1024 * MB], start=16, maximum=2**24)
    exact = math.floor((0.8 * 1024 * MB - 50 * MB) / 200)
    assert found == [exact]
    # never doubled 16 → 4,194,304 (19 probes): 3 probes, the jump, the unit above it
    assert [r.params["batch"] for r in runs] == [16, 32, 64, exact, exact + 1]


def test_search_jumps_from_the_first_budget_to_a_boundary_near_the_start() -> None:
    per_unit = int((0.8 * 64 * MB - 10 * MB) / 161.5)

    def peak(batch: int) -> int:
        return 10 * MB + batch * per_unit

    found, runs = simulate_search(peak, [64 * MB], start=16)
    assert found == [161]
    assert [r.params["batch"] for r in runs] == [16, 32, 64, 161, 162]  # not 128, 256


def test_search_doubles_once_after_two_short_jumps_then_jumps_again() -> None:
    def peak(batch: int) -> int:
        return int(10 * MB + 2 * MB * batch**0.5)  # concave: the line lands short

    found, runs = simulate_search(peak, [64 * MB])
    assert found == [424]
    values = [r.params["batch"] for r in runs]
    assert values[:7] == [1, 2, 4, 60, 177, 354, 371]  # jump, jump, double (2 × 177), jump
    assert len(runs) == 14


def test_search_converges_on_a_curve_the_line_misjudges() -> None:
    def peak(batch: int) -> int:
        return int(10 * MB + 2000 * batch**1.5)  # convex: the local line undershoots

    found, runs = simulate_search(peak, [64 * MB, 256 * MB])
    for f, budget in zip(found, [64 * MB, 256 * MB], strict=True):
        assert f is not None and peak(f) <= 0.8 * budget
        assert peak(math.ceil(f * 1.02) + 1) > 0.8 * budget
    # one overshoot to --max, then bisection where the line is wrong: 21 (doubling first: 29)
    assert len(runs) <= 21


def test_search_stops_at_the_max_and_when_nothing_fits() -> None:
    found, _ = simulate_search(lambda b: 10 * MB, [512 * MB], maximum=100)
    assert found == [100]
    found, runs = simulate_search(lambda b: 900 * MB, [512 * MB])
    assert found == [None] and len(runs) == 1


def lost(status: Status = "error", **params: Any) -> Run:
    """A run memdiag could not measure: its worker was lost."""
    r = run(0, status=status, **params)
    r.infrastructure = "worker lost (tcp://127.0.0.1:1)"
    return r


def test_a_lost_worker_is_no_verdict_for_the_search() -> None:
    probes = [run(20, batch=1), run(30, batch=2), lost(batch=4)]
    for p in probes:
        p.limit_bytes = int(0.8 * 512 * MB)
    result, value = search_budget(probes, "batch", {}, 512 * MB, 0.8, 1, 4096)
    # batch=4 is not "over the budget": the search stops there and says why
    assert value is None and result.largest_fitting == 2
    assert result.note == "batch=4 could not be measured: worker lost (tcp://127.0.0.1:1)"
    assert [p["fits"] for p in result.probes] == [True, True, False]
    assert result.probes[2]["infrastructure"] == "worker lost (tcp://127.0.0.1:1)"
    # the same run as the job's own error is a failing value: the search bisects below it
    probes[2].infrastructure = None
    result, value = search_budget(probes, "batch", {}, 512 * MB, 0.8, 1, 4096)
    assert value == 3 and result.note == ""


def test_a_lost_confirmation_run_is_unmeasured_not_refuted() -> None:
    status = confirm_status({"batch": 10}, 512 * MB, 0.8, [lost(batch=10)])
    assert status["status"] == "unmeasured"
    assert status["reason"] == "worker lost (tcp://127.0.0.1:1)"
    axes = {"batch": [10, 20]}
    configs = summarise([run(100, wall=1, batch=10), run(120, wall=2, batch=20)], axes)
    (row,) = build_matrix(configs, [512 * MB], 0.8, confirm_runs=[lost(batch=10)])
    assert row.config == {"params": {"batch": 10}} and row.refuted == []
    # a job that failed by itself under the budget is refuted
    failed = run(100, status="error", batch=10)
    assert confirm_status({"batch": 10}, 512 * MB, 0.8, [failed])["status"] == "refuted"


def test_the_search_ranks_speed_by_the_matrix_rule() -> None:
    limit = int(0.8 * 512 * MB)
    quick = run(20, wall=1.0, batch=10)
    near = run(25, wall=1.04, batch=15)  # 4% slower: inside the single-run noise (5%)
    slow = run(30, wall=2.0, batch=20)
    for p in (quick, near, slow):
        p.limit_bytes = limit
    # one probe reports no records: all are ranked by wall time, never records/s against
    # wall seconds (where slow's 500 records/s would beat quick's -1.0 s)
    quick.records_per_s = None
    result, _ = search_budget([quick, near, slow], "batch", {}, 512 * MB, 0.8, 10, 20)
    assert result.fastest_fitting == 10
    near.peak_rss_bytes = 15 * MB  # tied with the quickest, and a lower peak: it wins
    result, _ = search_budget([quick, near, slow], "batch", {}, 512 * MB, 0.8, 10, 20)
    assert result.fastest_fitting == 15


def heap_run(n: int, heap_limit_mb: int, heap_mb: float, wall: float) -> Run:
    """A Node job's run at input size `n`: RSS that fits any budget, V8's heap peak given."""
    return Run(
        target="t",
        params={"records": n, "heap_limit": heap_limit_mb * MB},
        status="ok",
        peak_rss_bytes=int((180 + n / 1000) * MB),
        peak_heap_bytes=int(heap_mb * MB),
        heap_source="v8",
        wall_s=wall,
        cpu_s=wall,
        records=n,
        records_per_s=n / wall,
    )


def test_a_heap_limit_the_heap_outgrows_at_the_decision_size_is_refused() -> None:
    # Both heap limits hold the heap at every size measured (10 MB + 10 KB a record: 90 MB at
    # 8,000); at 20,000 records the heap needs about 210 MB, over 128 MB but under 512 MB.
    sizes = [1000, 2000, 4000, 8000]
    runs = [
        heap_run(n, limit, 10 + n / 100, wall=n / (2000 if limit == 128 else 1000))
        for limit in (128, 512)
        for n in sizes
    ]
    axes = {"records": sizes, "heap_limit": [128 * MB, 512 * MB]}
    sweep = sweep_of(runs, axes, budgets_bytes=[1024 * MB], predict={"records": 20_000})
    (row,) = sweep.matrix
    assert row.config is not None
    # RSS alone would choose 128 MB: twice as fast, and its RSS fits 1 GB with room to spare.
    assert row.config["params"]["heap_limit"] == 512 * MB
    (refusal,) = sweep.heap_refusals
    assert "heap_limit=128MB" in refusal and "over its heap limit of 128 MB" in refusal
    predicted_mb = float(refusal.split("up to ")[1].split(" MB")[0].replace(",", ""))
    assert 200 <= predicted_mb <= 260  # the line through the heap says 210 MB there
    # The same runs decided at a size both hold: nothing is refused, 128 MB is chosen.
    near = sweep_of(runs, axes, budgets_bytes=[1024 * MB], predict={"records": 10_000})
    assert near.heap_refusals == [] and near.matrix[0].config is not None
    assert near.matrix[0].config["params"]["heap_limit"] == 128 * MB
