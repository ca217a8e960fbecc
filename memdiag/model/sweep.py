"""A sweep: many runs over a grid of parameters, and what analysis made of them."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from memdiag.model.files import KIND_VERSIONS, load_model
from memdiag.model.run import Run, Status
from memdiag.model.schema import SchemaError, build
from memdiag.params import index_of

# The tuning knobs a job runs with (positive counts), as opposed to its input size.
TUNING_AXES = ("batch", "concurrency")
# Axes that describe the input's size, not how the job runs (more with `--size-axis`):
# scaling is fitted along them, and the decision matrix compares configurations at the
# largest size measured, since a user chooses a batch size, not the size of the input.
SIZE_AXES = ("records", "items", "cycles", "rows", "players", "games", "pages", "size")
# Version 2 adds the decision at production size (`at`, bounds, capacity), `search` and
# confirmations; version 1 files are still read (the new fields take their defaults).
SWEEP_SCHEMA_VERSION = KIND_VERSIONS["sweep"][-1]


@dataclass(frozen=True)
class ConfigSummary:
    """One configuration's repeats: medians and [min, max] spreads over its `ok` runs.

    `status` is `ok` when every repeat finished ok, else the most frequent failure. When no
    repeat finished ok the medians are over all repeats (an `oom` peak is where it was stopped).
    """

    params: dict[str, Any]
    status: Status
    runs: int
    statuses: dict[str, int]
    peak_rss_bytes: int | None
    peak_rss_spread: list[int] | None
    wall_s: float | None
    wall_spread: list[float] | None
    records: int | None = None
    records_per_s: float | None = None
    records_per_s_spread: list[float] | None = None
    error: str | None = None
    peak_heap_bytes: int | None = None
    peak_heap_spread: list[int] | None = None
    # Node jobs: the median share of the wall time V8 spent in GC pauses (see V8Stats).
    gc_share: float | None = None


@dataclass(frozen=True)
class MatrixRow:
    """The decision for one budget: the chosen config (None when nothing fits) and its cost.

    `peak_change` and `slowdown` compare with the reference config (fractions and ×). When
    nothing fits, `smallest` names the config with the lowest peak and `over_bytes` how far it
    is above headroom × budget.
    """

    budget_bytes: int
    headroom: float
    config: dict[str, Any] | None
    peak_rss_bytes: int | None = None
    budget_fraction: float | None = None
    wall_s: float | None = None
    records_per_s: float | None = None
    peak_change: float | None = None
    slowdown: float | None = None
    smallest: dict[str, Any] | None = None
    over_bytes: int | None = None
    # The input size the decision holds for (--at, else the largest measured).
    at: dict[str, Any] | None = None
    # "measured" (the peak was measured at `at`) or "predicted" (from the scaling fit).
    basis: str | None = None
    # What the budget was checked against: the highest repeat, or the prediction's upper end.
    peak_upper_bytes: int | None = None
    # {"axis", "largest_fitting"}: the largest input of `axis` that fits (null: no limit).
    capacity: dict[str, Any] | None = None
    # Why this config and not a faster one ("tie within noise: ..."), or a capacity warning.
    note: str | None = None
    # With --confirm: {"status": "confirmed"|"refuted"|"pending"|"unmeasured", "params",
    # "run_status", "peak_rss_bytes", "limit_bytes"} (+ "reason" when unmeasured: memdiag
    # could not run it); `refuted` lists the candidates that failed before it.
    confirmation: dict[str, Any] | None = None
    refuted: list[dict[str, Any]] = field(default_factory=list)
    # "measured" (wall and records/s at `at`, or at the largest size measured without --at)
    # or "predicted" (from the configuration's fit of wall time against the size).
    speed_basis: str | None = None
    # False when the chosen configuration's prediction is not firm (see Prediction).
    firm: bool | None = None
    # Node jobs: the chosen configuration's GC time share (median; above GC_SHARE_HIGH it is
    # flagged: it fits, but spends that much of its time collecting near its heap limit).
    gc_share: float | None = None


@dataclass(frozen=True)
class ScalingFit:
    """How peak memory grows along `axis`, the other params fixed: the line through the
    points, and the model chosen among the candidates (analysis/curves.py).

    `points` are [size, median peak]; the line is intercept + bytes_per_unit × size; `r2` and
    the slope's interval (`slope_low`, `slope_high`, bytes per unit) need 3 sizes and are None
    with 2. `repeat_sd_bytes` is the repeats' own spread; `peak_max_bytes` the highest median
    measured and `worst_bytes` the highest repeat. `band` holds [size, peak, low, high] from
    the smallest size out to the prediction size, for the capacity plot.

    `model` is the model chosen (`constant`, `linear`, `nlogn`, `saturating`, `power`; empty in
    files written before models: then the verdict's line or constant), `model_params` its
    parameters, `models` every candidate with its leave-one-out error and whether it is
    plausible (4 sizes or more), `curvature` the curvature test on the line's residuals
    (`curvature_f` its F), `pessimistic` True when curvature was found and no model is
    clearly better (budgets then check the most pessimistic plausible one).
    `doubling_factor` is the chosen model's memory at twice the largest size over the memory
    there; `plateau_bytes` where a saturating model levels off. `wall_points` are [size,
    median wall seconds] and `wall_model` the model chosen for them (time at `--at`).
    """

    axis: str
    params: dict[str, Any]
    points: list[list[float]]
    intercept_bytes: float
    bytes_per_unit: float
    r2: float | None
    growth_fraction: float
    verdict: Literal["constant", "grows"]
    sizes: int = 0
    slope_low: float | None = None
    slope_high: float | None = None
    residual_sd_bytes: float | None = None
    repeat_sd_bytes: float = 0.0
    peak_max_bytes: int = 0
    worst_bytes: int = 0
    band: list[list[float]] = field(default_factory=list)
    model: str = ""
    model_params: dict[str, float] = field(default_factory=dict)
    models: list[dict[str, Any]] = field(default_factory=list)
    curvature: bool | None = None
    curvature_f: float | None = None
    pessimistic: bool = False
    doubling_factor: float | None = None
    plateau_bytes: int | None = None
    wall_points: list[list[float]] = field(default_factory=list)
    wall_model: dict[str, Any] | None = None


@dataclass(frozen=True)
class VariantPair:
    """One variant against the first listed, same other params: peak reduction and slowdown."""

    params: dict[str, Any]
    baseline: Any
    variant: Any
    baseline_peak_bytes: int | None
    variant_peak_bytes: int | None
    peak_reduction: float | None
    slowdown: float | None
    meets: bool | None


@dataclass(frozen=True)
class Prediction:
    """A fit's predicted peak at `value` of `axis`, its interval, and the budgets it fits in.

    `fits_budgets` checks the interval's upper end (`peak_high_bytes`) against headroom ×
    budget. `firm` is False with 2 sizes, with 3 sizes of growing memory (a curve cannot be
    told from a line), when memory curves and no model is clearly better, or beyond 10× the
    largest size measured; `warning` then says why and how many more sizes would make it firm.
    `model` is the fit's model; `settled` is True when more sizes would not change the answer
    (interval within 15% of the budget it decides, or the plausible models agree): what
    `--sizes auto` measures toward. `wall_s` and `records_per_s` are predicted at `value`.
    """

    axis: str
    value: float
    params: dict[str, Any]
    peak_rss_bytes: int
    fits_budgets: list[int]
    peak_low_bytes: int | None = None
    peak_high_bytes: int | None = None
    verdict: str | None = None
    extrapolation: float | None = None
    firm: bool = True
    warning: str | None = None
    model: str | None = None
    settled: bool | None = None
    wall_s: float | None = None
    records_per_s: float | None = None


@dataclass(frozen=True)
class Capacity:
    """The largest input of `axis` a configuration fits in a budget (None: no limit).

    Read from the fit's upper bound against headroom × budget; `verdict` is the fit's.
    """

    axis: str
    params: dict[str, Any]
    budget_bytes: int
    largest_fitting: int | None
    verdict: str


@dataclass(frozen=True)
class SearchResult:
    """`--batch auto` for one budget: the largest value of `axis` that fits, the fastest.

    `params` are the other parameters the search ran with; `probes` the runs of this
    budget's search in order ({value, status, peak_rss_bytes, limit_bytes, records_per_s,
    wall_s, fits}); `done` is False while probes remain (continue with --resume).
    """

    axis: str
    params: dict[str, Any]
    budget_bytes: int
    limit_bytes: int
    largest_fitting: int | None
    fastest_fitting: int | None
    probes: list[dict[str, Any]]
    done: bool
    note: str = ""


@dataclass(frozen=True)
class HostSummary:
    """A machine that ran some of a sweep's runs (from the runs' `env.host`), and how many."""

    name: str
    cpus: int | None
    memory_bytes: int | None
    python: str | None
    memdiag: str | None
    runs: int
    cpu_model: str | None = None
    # The cgroup's memory limit on that machine, when below its memory.
    memory_limit_bytes: int | None = None


@dataclass
class Sweep:
    """A sweep of `target` over the cartesian product of `axes`, with `base` params fixed.

    Measurement fills `runs` (and `confirm_runs`); analysis fills `configs`, `matrix`,
    `scaling`, `variants`, `predictions`, `capacity` and `search` from the runs and the
    settings (`budgets_bytes`, `headroom`, `reference`, `predict`, `auto`), so a saved sweep
    can be re-analysed and re-rendered without re-running.
    """

    target: str
    axes: dict[str, list[Any]]
    base: dict[str, Any] = field(default_factory=dict)
    repeat: int = 3
    jobs: int = 1
    timeout_s: float | None = None
    limit_bytes: int | None = None
    budgets_bytes: list[int] = field(default_factory=list)
    headroom: float = 0.8
    reference: dict[str, Any] | None = None
    # The production size(s) to decide at (`--at`, alias `--predict`), axis → value.
    predict: dict[str, float] = field(default_factory=dict)
    size_axes: list[str] = field(default_factory=list)
    # `--param NAME=auto[:START]` axes searched per budget: name → {"start", "max"}.
    auto: dict[str, dict[str, int]] = field(default_factory=dict)
    confirm: bool = False
    # `--sizes auto`: {"axis", "given": [sizes given]}; the `--at` axis gets more sizes,
    # doubling, until the decision is settled (empty: off).
    sizes_auto: dict[str, Any] = field(default_factory=dict)
    started_at: str = ""
    env: dict[str, Any] = field(default_factory=dict)
    # The dask scheduler's address (or `local:N`) when the runs went to a cluster.
    cluster: str | None = None
    runs: list[Run] = field(default_factory=list)
    configs: list[ConfigSummary] = field(default_factory=list)
    matrix: list[MatrixRow] = field(default_factory=list)
    scaling: list[ScalingFit] = field(default_factory=list)
    variants: list[VariantPair] = field(default_factory=list)
    predictions: list[Prediction] = field(default_factory=list)
    capacity: list[Capacity] = field(default_factory=list)
    search: list[SearchResult] = field(default_factory=list)
    # `--confirm` runs at the decision size under limit = budget (outside the axes' grid).
    confirm_runs: list[Run] = field(default_factory=list)

    def predict_at(self) -> dict[str, Any]:
        """Return the `--at` sizes as given: whole numbers without a trailing `.0`."""
        return {k: int(v) if v == int(v) else v for k, v in self.predict.items()}

    # The machines the runs ran on, and what a reader must know about them (analysis).
    hosts: list[HostSummary] = field(default_factory=list)
    host_warnings: list[str] = field(default_factory=list)
    # The configuration the matrix compares with (analysis): its params at the decision
    # size; None when no configuration matches `reference` (then `reference` is shown).
    reference_config: dict[str, Any] | None = None
    # With `--sizes auto` (analysis): why no further size is measured, or which one is next.
    sizes_status: str = ""
    # Node jobs decided at `--at` (analysis): the configurations refused because their V8
    # heap there is predicted to reach their heap limit, one line each.
    heap_refusals: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON form (`schema_version`, `kind: "sweep"` first); runs in full."""
        data = asdict(self)
        data["runs"] = [run.to_dict() for run in self.runs]
        data["confirm_runs"] = [run.to_dict() for run in self.confirm_runs]
        return {"schema_version": SWEEP_SCHEMA_VERSION, "kind": "sweep", **data}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Sweep:
        """Build a Sweep from its JSON form, every field checked; every run must belong to
        the axes."""
        sweep = build(cls, data)
        for i, run in enumerate(sweep.runs):
            for axis, allowed in sweep.axes.items():
                if index_of(allowed, run.params.get(axis)) is None:
                    raise SchemaError(
                        f"runs[{i}].params.{axis}",
                        f"{run.params.get(axis)!r} is not one of the axis's values",
                    )
        return sweep


def load_sweep(path: str | os.PathLike[str]) -> Sweep:
    """Return the Sweep saved at `path` (a sweep's results.json)."""
    return load_model(path, "sweep", Sweep.from_dict)
