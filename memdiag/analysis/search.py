"""`--batch auto`: the largest value of a numeric axis that fits each budget, in measured runs.

Each budget is searched in runs under limit = headroom × budget, so a probe over the budget
is stopped early as `oom`. Budgets go smallest first, and every probe informs the others: an
ok probe's peak is exact, and an `oom` under a limit at least this budget's is over it.

One search step, from the probes so far (a pure function: a resumed search continues
where it stopped):
- no value fits yet: probe the start value;
- no value fails yet: double (start, 2×start, 4×start ... up to --max); once 3 ok probes span
  4× or more, jump instead to where the line through the highest ok probes reaches the limit,
  unless the last two jumps both fell short (then double once, and jump again);
- a fitting value `lo` and a failing one `hi`: probe where the line predicts the limit
  (safeguarded: after two probes on the same side, or when the line puts the limit at or
  past `hi`, the midpoint), until hi − lo is one unit or 2% of lo.

The result per budget: the largest fitting value, and the fastest fitting value at or below
it, by the matrix's rule (analysis/matrix.choose: speed differences inside the repeats'
spread, or under 5% for a value probed once, are ties, won by the lower peak).

A run memdiag itself could not measure (`Run.infrastructure`: a lost worker, memdiag's own
exception) says nothing about the job: its value is neither fitting nor failing, and the
search stops there with a note rather than count it as over the budget.
"""

from __future__ import annotations

import math
from typing import Any

from memdiag.analysis.aggregate import by_throughput, run_fits, summarise_config
from memdiag.analysis.candidates import measured_candidates
from memdiag.analysis.fit import fit_line
from memdiag.analysis.matrix import choose
from memdiag.model import Run, SearchResult
from memdiag.params import has_params, same_value

PRECISION = 0.02
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
    elif nxt is not None and (lost := _lost(mine, axis, nxt)) is not None:
        nxt, note = None, f"{axis}={nxt} could not be measured: {lost.infrastructure}"
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
    ok = [run_fits(r, limit) for r in runs if r.ok]
    if ok:
        return all(ok)
    return False if False in (run_fits(r, limit) for r in runs) else None


def _fitting(run: Run, limit: int) -> bool:
    return run_fits(run, limit) is True


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
    if hi is None:
        short = _short_jumps(probes, mine, axis, limit, start)
        if guess is not None and short < 2 and _trusted(probes, axis):
            return min(maximum, max(lo + 1, guess)), ""
        return min(maximum, lo * 2), ""
    if hi - lo <= max(1, math.floor(PRECISION * lo)):
        return None, ""
    if guess is not None and guess < hi and _streak(mine, limit) < 2:
        return max(lo + 1, guess), ""  # a line that puts the limit past a failing hi is wrong
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


def _short_jumps(probes: list[Run], mine: list[Run], axis: str, limit: int, start: int) -> int:
    """How many of this search's last probes were jumps that fell short of the limit.

    Doubling probes are no jumps (the start, or twice a fitting value): one ends the count,
    so that after two short jumps the search doubles once and then jumps again.
    """
    fitting = {r.params[axis] for r in probes if _fitting(r, limit)}
    count = 0
    for run in reversed(mine):
        value = run.params[axis]
        doubled = value == start or (value % 2 == 0 and value // 2 in fitting)
        if doubled or not _fitting(run, limit):
            break
        count += 1
    return count


def _streak(mine: list[Run], limit: int) -> int:
    """How many of this search's last probes landed on the same side of the limit."""
    sides = [_fitting(r, limit) for r in mine]
    count = 0
    for side in reversed(sides):
        if side != sides[-1]:
            break
        count += 1
    return count


def _fastest(probes: list[Run], axis: str, limit: int, largest: int | None) -> int | None:
    """The fastest fitting probed value at or below `largest`, by the matrix's rule
    (`choose`: ties inside the noise go to the lower peak)."""
    if largest is None:
        return None
    groups: dict[int, list[Run]] = {}
    for r in probes:
        if _fitting(r, limit) and r.params[axis] <= largest:
            groups.setdefault(int(r.params[axis]), []).append(r)
    if not groups:
        return None
    values = {axis: sorted(groups)}
    configs = [summarise_config(group, values) for group in groups.values()]
    chosen, _ = choose(measured_candidates(configs), by_throughput(configs))
    return int(chosen.params[axis])


def _lost(probes: list[Run], axis: str, value: int) -> Run | None:
    """A run at `value` that memdiag itself could not measure (see Run.infrastructure)."""
    runs = [r for r in probes if same_value(r.params[axis], value)]
    return next((r for r in runs if r.infrastructure is not None), None)


def _probe(run: Run, axis: str, limit: int) -> dict[str, Any]:
    return {
        "value": run.params[axis],
        "status": run.status,
        "peak_rss_bytes": run.peak_rss_bytes,
        "limit_bytes": run.limit_bytes,
        "records_per_s": run.records_per_s,
        "wall_s": run.wall_s,
        "fits": _fitting(run, limit),
        "infrastructure": run.infrastructure,
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
