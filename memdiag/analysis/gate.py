"""Regression gates: accept results as a baseline, and compare new results against it.

Pure: every function takes loaded documents or entries (the CLI reads the files, see
`load_comparable` in cli/common.py) and returns entries, a baseline document or a
GateResult (memdiag/model/gate.py). Every result memdiag writes can be compared: a run, a
sweep, a pytest report, a baseline. Each is reduced to comparable entries, one per
configuration: its target and parameters, status, and per metric the median with the
[min, max] spread of its repeats.

Configurations are matched by target and parameter values (`batch=50` is `batch="50"`).
A configuration regresses when its status was ok and no longer is, when its median passes
`--max-peak`, or when its median is worse than the baseline's by more than the tolerance,
unless it is still inside the baseline's own [min, max] spread: a change the baseline's
repeats already showed is noise. Past twice the tolerance it regresses whatever the spreads.
Nothing matched, or a metric missing on either side, is an error, never a pass.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

from memdiag.errors import MemdiagError
from memdiag.model import SCHEMA_VERSION, GateResult, GateRow
from memdiag.model.gate import Verdict
from memdiag.params import ParamsKey, params_key

# metric name -> (median field, spread field) in a comparable entry
METRICS = {
    "peak_rss": ("peak_rss_bytes", "peak_rss_spread"),
    "peak_heap": ("peak_heap_bytes", "peak_heap_spread"),
    "wall": ("wall_s", "wall_spread"),
}
_ENTRY_FIELDS = ("status", *(name for pair in METRICS.values() for name in pair))


# The kinds of saved result that reduce to comparable entries.
COMPARABLE_KINDS = ("run", "sweep", "pytest", "baseline")


def comparable(data: dict[str, Any]) -> list[dict[str, Any]]:
    """Return the comparable entries of a loaded result (run, sweep, pytest report, baseline).

    Raises KeyError, TypeError or ValueError when the document is damaged.
    """
    return _ENTRIES[data["kind"]](data)


def _from_sweep(data: dict[str, Any]) -> list[dict[str, Any]]:
    from memdiag.analysis.aggregate import summarise
    from memdiag.model import Run

    runs = [Run.from_dict(r) for r in data["runs"]]
    axes = data["axes"]
    configs = summarise(runs, axes)
    base = data.get("base") or {}
    return [_entry(data["target"], {**base, **c.params}, vars(c)) for c in configs]


def _from_run(data: dict[str, Any]) -> list[dict[str, Any]]:
    from memdiag.analysis.aggregate import summarise_config
    from memdiag.model import Run

    run = Run.from_dict(data)
    config = summarise_config([run], {name: [value] for name, value in run.params.items()})
    return [_entry(run.target, run.params, vars(config))]


def _from_pytest(data: dict[str, Any]) -> list[dict[str, Any]]:
    entries = []
    for config in data["configs"]:
        values = {"status": "ok", **config}
        for median, spread in METRICS.values():
            if values.get(median) is not None:
                values[spread] = [values[median], values[median]]
        entries.append(_entry("pytest", config["params"], values))
    return entries


def _from_baseline(data: dict[str, Any]) -> list[dict[str, Any]]:
    return [_entry(c["target"], c["params"], c) for c in data["configs"]]


_ENTRIES = {
    "sweep": _from_sweep,
    "run": _from_run,
    "pytest": _from_pytest,
    "baseline": _from_baseline,
}


def _entry(target: str, params: dict[str, Any], values: dict[str, Any]) -> dict[str, Any]:
    return {"target": target, "params": dict(params), **{k: values.get(k) for k in _ENTRY_FIELDS}}


def make_baseline(
    entries: list[dict[str, Any]], sources: list[str], env: dict[str, Any]
) -> dict[str, Any]:
    """Return a baseline document holding `entries`, read from `sources` on `env`."""
    keys = [_key(e, ()) for e in entries]
    if len(set(keys)) != len(keys):
        raise MemdiagError("the results given hold the same configuration twice")
    return {
        "schema_version": SCHEMA_VERSION,
        "kind": "baseline",
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "sources": [str(p) for p in sources],
        "env": env,
        "configs": entries,
    }


def _key(entry: dict[str, Any], ignore: tuple[str, ...] | list[str]) -> tuple[str, ParamsKey]:
    """Return what matches a configuration across files: its target and parameters by value."""
    return entry["target"], params_key(entry["params"], ignore)


def compare(
    baseline: list[dict[str, Any]],
    current: list[dict[str, Any]],
    metric: str = "peak_rss",
    tolerance: float = 0.10,
    max_peak: int | None = None,
    ignore: tuple[str, ...] | list[str] = (),
) -> GateResult:
    """Return every configuration's verdict; configurations are matched by target and
    parameter values (less the `ignore`d ones), and unmatched ones are listed on their side.

    Raises MemdiagError when nothing matches, or when a matched configuration that ran ok
    has no figure for `metric`: a gate that compared nothing must not pass.
    """
    result = GateResult(metric, tolerance, max_peak)
    base = {_key(e, ignore): e for e in baseline}
    now = {_key(e, ignore): e for e in current}
    result.only_in_baseline = [e for k, e in base.items() if k not in now]
    result.only_in_current = [e for k, e in now.items() if k not in base]
    matched = [(base[key], entry) for key, entry in now.items() if key in base]
    if not matched:
        raise MemdiagError(_nothing_matched(result, ignore))
    _check_metric(matched, metric)
    result.rows = [_judge(b, n, metric, tolerance, max_peak) for b, n in matched]
    return result


def _label(entry: dict[str, Any]) -> str:
    params = " ".join(
        f"{k}={v!r}" if isinstance(v, str) else f"{k}={v}" for k, v in entry["params"].items()
    )
    return f"{entry['target']} {params}".strip()


def _listing(entries: list[dict[str, Any]], most: int = 8) -> str:
    labels = [_label(e) for e in entries[:most]]
    if len(entries) > most:
        labels.append(f"and {len(entries) - most} more")
    return "; ".join(labels) or "none"


def _nothing_matched(result: GateResult, ignore: tuple[str, ...] | list[str]) -> str:
    ignored = f" (ignoring {', '.join(ignore)})" if ignore else ""
    return (
        f"no configuration of the results matches one of the baseline{ignored}: "
        f"baseline only: {_listing(result.only_in_baseline)}; "
        f"results only: {_listing(result.only_in_current)} "
        "(--ignore-param NAME matches across a parameter that differs)"
    )


def _check_metric(matched: list[tuple[dict[str, Any], dict[str, Any]]], metric: str) -> None:
    """Raise MemdiagError naming `metric` when a side that ran ok has no figure for it."""
    median = METRICS[metric][0]
    for side, index in (("baseline", 0), ("results", 1)):
        missing = [
            pair[index]
            for pair in matched
            if pair[index].get("status") == "ok" and pair[index].get(median) is None
        ]
        if missing:
            hint = " (measure with --heap)" if metric == "peak_heap" else ""
            raise MemdiagError(
                f"--metric {metric}: the {side} has no {metric} figure for "
                f"{len(missing)} of {len(matched)} configurations ({_listing(missing, 3)}){hint}"
            )


def _change(before: float | None, after: float | None) -> float | None:
    """Return after/before - 1, None without both figures (a zero baseline: 0 or +inf)."""
    if before is None or after is None:
        return None
    if before == 0:
        return 0.0 if after == 0 else math.inf
    return after / before - 1


def _judge(
    base: dict[str, Any], now: dict[str, Any], metric: str, tolerance: float, max_peak: int | None
) -> GateRow:
    median, spread = METRICS[metric]
    before, after = base.get(median), now.get(median)
    change = _change(before, after)

    def row(verdict: Verdict, reason: str = "") -> GateRow:
        return GateRow(now["target"], now["params"], before, after, change, verdict, reason)

    status = now.get("status")
    if status != "ok" and (base.get("status") == "ok" or change is None):
        return row("failed", f"status {status}")
    peak = after if metric != "wall" else now.get("peak_rss_bytes")
    if max_peak is not None and peak is not None and peak > max_peak:
        return row("over limit", "median peak above --max-peak")
    if change is None:
        # Only a baseline that did not run ok lacks the figure here (see _check_metric).
        return row("improved", f"was {base.get('status')}")
    if change > 2 * tolerance:
        return row("regressed", "more than twice the tolerance")
    if change > tolerance:
        high_base = (base.get(spread) or [before])[-1]
        if after <= high_base:
            return row("within noise", "past the tolerance, inside the baseline's own spread")
        return row("regressed", "past the tolerance, above the baseline's spread")
    if change < -tolerance:
        return row("improved")
    return row("ok")
