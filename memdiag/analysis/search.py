"""`--batch auto`: the largest value of a numeric axis that fits each budget, in measured runs.

Each budget is searched in runs under limit = headroom × budget, so a probe over the budget
is stopped early as `oom`. Budgets go smallest first, and every probe informs the others: an
ok probe's peak is exact, and an `oom` under a limit at least this budget's is over it.

One search step, from the probes so far (a pure function: a resumed search continues
where it stopped):
- no value fits yet: probe the start value;
- no value fails yet: double (start, 2×start, 4×start ... up to --max); once 3 ok probes span
  4× or more, jump instead to where the line through the highest ok probes reaches the limit,
  unless the last two jumps both fell short;
- a fitting value `lo` and a failing one `hi`: probe where the line predicts the limit
  (safeguarded: after two probes on the same side, the midpoint), until hi − lo is one unit
  or 2% of lo.

The result per budget: the largest fitting value, and the fastest fitting value at or below
it (speed differences under 5% are ties, won by the lower peak: probes run once each).
"""

from __future__ import annotations

import math
from typing import Any

from memdiag.analysis.fit import fit_line
from memdiag.model import Run, SearchResult
from memdiag.params import has_params, same_value

PRECISION = 0.02
TIE = 0.05
# The line that places the next probe goes through this many of the highest ok probes.
LOCAL_POINTS = 4


def search_budget(
    runs: list[Run],
    axis: str,
    params: dict[str, Any],
    budget: int,
    headroom: float,
    start: int,
    maximum: int,
) -> tuple[SearchResult, int | None]:
    """Return the search for one budget so far, and the next value to probe (None: done).

    `runs` are the sweep's runs in the order they finished; those with `params` are probes.
    """
    limit = int(headroom * budget)
    probes = [
        r for r in runs if has_params(r.params, params) and isinstance(r.params.get(axis), int)
    ]
    known = {
        v: fits
        for v in {r.params[axis] for r in probes}
        if (fits := _fits(probes, axis, v, limit)) is not None
    }
    lo = max((v for v, ok in known.items() if ok), default=None)
    hi = min((v for v, ok in known.items() if not ok and (lo is None or v > lo)), default=None)
    mine = [r for r in probes if r.limit_bytes == limit]
    nxt, note = _next(probes, mine, axis, limit, lo, hi, start, maximum)
    if nxt is not None and nxt in known:
        nxt = None  # never probe a known value twice (inconsistent probes end the search)
    result = SearchResult(
        axis=axis,
        params=params,
        budget_bytes=budget,
        limit_bytes=limit,
        largest_fitting=lo,
        fastest_fitting=_fastest(probes, axis, limit, lo),
        probes=[_probe(r, axis, limit) for r in mine],
        done=nxt is None,
        note=note,
    )
    return result, nxt


def _fits(probes: list[Run], axis: str, value: int, limit: int) -> bool | None:
    """True: ran ok within the limit; False: over it or failed; None: not known at this limit."""
    runs = [r for r in probes if same_value(r.params[axis], value)]
    ok = [r for r in runs if r.ok]
    if ok:
        return max(r.peak_rss_bytes for r in ok) <= limit
    if any(r.status != "oom" for r in runs):
        return False
    # Stopped at a lower limit says nothing about this one.
    return False if any((r.limit_bytes or limit) >= limit for r in runs) else None


def _next(
    probes: list[Run],
    mine: list[Run],
    axis: str,
    limit: int,
    lo: int | None,
    hi: int | None,
    start: int,
    maximum: int,
) -> tuple[int | None, str]:
    if lo is None:
        if hi is not None and hi <= start:
            return None, f"nothing fits: {axis}={hi} is over the limit"
        return start, ""
    if lo >= maximum:
        return None, f"reached --max {axis}={maximum}"
    guess = _guess(probes, axis, limit)
    streak = _streak(mine, limit)
    if hi is None:
        if guess is not None and streak < 2 and _trusted(probes, axis):
            return min(maximum, max(lo + 1, guess)), ""
        return min(maximum, lo * 2), ""
    if hi - lo <= max(1, math.floor(PRECISION * lo)):
        return None, ""
    if guess is not None and streak < 2:
        return min(hi - 1, max(lo + 1, guess)), ""
    return (lo + hi) // 2, ""


def _guess(probes: list[Run], axis: str, limit: int) -> int | None:
    """Where the line through the highest ok probes reaches `limit`, or None without a slope."""
    ok = sorted((r.params[axis], r.peak_rss_bytes) for r in probes if r.ok)
    top = ok[-LOCAL_POINTS:]
    if len({v for v, _ in top}) < 2:
        return None
    line = fit_line([float(v) for v, _ in top], [float(p) for _, p in top])
    if line.slope <= 0:
        return None
    return math.floor((limit - line.intercept) / line.slope)


def _trusted(probes: list[Run], axis: str) -> bool:
    """Enough ok probes to extrapolate from: 3 values at least, spanning 4× or more."""
    values = sorted({r.params[axis] for r in probes if r.ok})
    return len(values) >= 3 and values[-1] >= 4 * values[0]


def _streak(mine: list[Run], limit: int) -> int:
    """How many of this search's last probes landed on the same side of the limit."""
    sides = [r.ok and r.peak_rss_bytes <= limit for r in mine]
    count = 0
    for side in reversed(sides):
        if side != sides[-1]:
            break
        count += 1
    return count


def _fastest(probes: list[Run], axis: str, limit: int, largest: int | None) -> int | None:
    """The fastest ok probe within the limit, at or below `largest`; a tie (under 5%) goes
    to the lower peak."""
    if largest is None:
        return None
    fitting = [
        r for r in probes if r.ok and r.peak_rss_bytes <= limit and r.params[axis] <= largest
    ]
    if not fitting:
        return None

    def pace(r: Run) -> float:
        return r.records_per_s if r.records_per_s is not None else -r.wall_s

    best = max(pace(r) for r in fitting)
    tied = [r for r in fitting if abs(best - pace(r)) < TIE * abs(best)]
    return int(min(tied, key=lambda r: (r.peak_rss_bytes, -pace(r))).params[axis])


def _probe(run: Run, axis: str, limit: int) -> dict[str, Any]:
    return {
        "value": run.params[axis],
        "status": run.status,
        "peak_rss_bytes": run.peak_rss_bytes,
        "limit_bytes": run.limit_bytes,
        "records_per_s": run.records_per_s,
        "wall_s": run.wall_s,
        "fits": run.ok and run.peak_rss_bytes <= limit,
    }


def search_all(
    runs: list[Run],
    auto: dict[str, dict[str, int]],
    combos: list[dict[str, Any]],
    budgets: list[int],
    headroom: float,
) -> tuple[list[SearchResult], list[tuple[dict[str, Any], int]]]:
    """Return every search (combination × budget) and the probes to run next.

    Next probes are (params, limit bytes): for each combination, only its smallest budget
    still searching, so that larger budgets start from what it found.
    """
    results: list[SearchResult] = []
    todo: list[tuple[dict[str, Any], int]] = []
    for axis, spec in auto.items():
        for combo in combos:
            waiting = True
            for budget in sorted(budgets):
                result, value = search_budget(
                    runs, axis, combo, budget, headroom, spec["start"], spec["max"]
                )
                results.append(result)
                if value is not None and waiting:
                    todo.append(({**combo, axis: value}, result.limit_bytes))
                    waiting = False
    return results, todo
