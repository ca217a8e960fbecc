"""Memory that bends, end to end: real jobs swept small and decided at a larger size."""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

from tests.conftest import MB, memdiag

# Candidate pairs inside one block, as a dedup pass keeps them: 16 bytes per pair, so the
# memory grows with the square of the records.
DEDUP = """
def run(records: int = 1000) -> int:
    scores = bytearray(16 * records * records)
    scores[::4096] = b"\\x01" * len(range(0, len(scores), 4096))
    seen = {f"player-{i % (records // 2 + 1)}" for i in range(records)}
    return len(seen) and records
"""

# 4 KB kept per record: a line with a known slope.
LINE = """
def run(records: int = 1000) -> int:
    kept = [bytearray(4096) for _ in range(records)]
    return len(kept)
"""


def load(out: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((out / "results.json").read_text())
    return data


def test_a_quadratic_job_is_not_chosen_for_a_budget_it_exceeds_at_the_decision_size(
    tmp_path: Path,
) -> None:
    path = tmp_path / "dedup.py"
    path.write_text(DEDUP)
    out = tmp_path / "out"
    result = memdiag(
        "sweep", f"{path}:run", "--param", "records=500,1000,1500,2000", "--repeat", "1",
        "--budget", "256MB,1GB", "--at", "records=4000", "--out", str(out), "--quiet",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    data = load(out)
    (fit,) = data["scaling"]
    assert fit["model"] == "power" and 1.7 <= fit["model_params"]["k"] <= 2.3
    # measured at --at by a real run: it does not fit 80% of 256 MB
    measured = tmp_path / "at.json"
    result = memdiag("run", f"{path}:run", "--param", "records=4000", "--json", str(measured))
    assert result.returncode == 0, result.stderr
    peak = json.loads(measured.read_text())["peak_rss_bytes"]
    assert peak > 0.8 * 256 * MB
    small, large = data["matrix"]
    assert small["config"] is None  # the line through the same points would have fit it
    line_at = fit["intercept_bytes"] + fit["bytes_per_unit"] * 4000
    assert line_at < 0.8 * 256 * MB
    assert large["config"] is not None and large["basis"] == "predicted"
    assert abs(large["peak_rss_bytes"] / peak - 1) <= 0.15
    assert large["peak_upper_bytes"] >= peak
    assert "grows as n^" in (out / "report.md").read_text()


def test_sizes_auto_measures_toward_the_decision_size_until_it_settles(tmp_path: Path) -> None:
    path = tmp_path / "line.py"
    path.write_text(LINE)
    out = tmp_path / "out"
    args = [
        "sweep", f"{path}:run", "--repeat", "1", "--budget", "512MB", "--at", "records=40000",
        "--sizes", "auto", "--out", str(out), "--quiet",
    ]  # fmt: skip
    result = memdiag(*args)
    assert result.returncode == 0, result.stderr
    data = load(out)
    sizes = data["axes"]["records"]
    assert data["sizes_auto"]["given"] == [620, 1240]  # --at / 64 and / 32
    assert sizes[:2] == [620, 1240] and sizes == sorted(sizes)
    assert all(b == 2 * a for a, b in itertools.pairwise(sizes))  # doubling
    assert 1 <= len(sizes) - 2 <= 6  # at most 6 extra runs
    assert len(data["runs"]) == len(sizes)  # every run recorded
    assert all(r["limit_bytes"] == 512 * MB for r in data["runs"][2:])  # under the budget
    assert data["sizes_status"].startswith("settled")
    (p,) = data["predictions"]
    assert p["settled"] and p["model"] == "linear"
    # 4 KB per record: the prediction at 40,000 records holds the 160 MB the records keep
    assert 160 * MB < p["peak_rss_bytes"] < 160 * MB + 60 * MB
    # --resume continues the same sweep: nothing is left to run, nothing is run again
    result = memdiag(*args, "--resume")
    assert result.returncode == 0, result.stderr
    again = load(out)
    assert [r["started_at"] for r in again["runs"]] == [r["started_at"] for r in data["runs"]]
    assert "--sizes auto: records given 620, 1,240; added" in (out / "report.md").read_text()


# What a schema 2 file written before the models lacks, per part.
NEW_FIELDS = {
    "scaling": [
        "model", "model_params", "models", "curvature", "curvature_f", "pessimistic",
        "doubling_factor", "plateau_bytes", "wall_points", "wall_model",
    ],
    "matrix": ["speed_basis", "firm"],
    "predictions": ["model", "settled", "wall_s", "records_per_s"],
}  # fmt: skip


def test_a_schema_2_file_from_before_the_models_still_renders(tmp_path: Path) -> None:
    from memdiag.model.files import write_json_atomic
    from tests.test_decision import sized, sweep_of

    sizes = [1000, 2000, 4000, 8000]
    runs = [sized(40 + n / 100, n, variant="grow") for n in sizes]
    runs += [sized(60, n, variant="flat") for n in sizes]
    sweep = sweep_of(
        runs, {"records": sizes, "variant": ["grow", "flat"]}, budgets_bytes=[512 * MB],
        predict={"records": 40_000},
    )  # fmt: skip
    old = sweep.to_dict()
    assert old["schema_version"] == 2
    for part, names in NEW_FIELDS.items():
        for row in old[part]:
            for name in names:
                del row[name]
    del old["sizes_auto"], old["sizes_status"]
    path = write_json_atomic(tmp_path / "results.json", old)
    result = memdiag("report", str(path))
    assert result.returncode == 0, result.stderr
    report = (tmp_path / "report.md").read_text()
    assert "memory grows with the input" in report and "memory is constant" in report
    assert "440.0 MB" in report  # the line at 40,000 records: 40 MB + 400 MB
    # a new decision from the old file refits the runs with the models
    result = memdiag("report", str(path), "--budget", "1GB")
    assert result.returncode == 0, result.stderr
    assert "grows linearly" in (tmp_path / "decision" / "report.md").read_text()
