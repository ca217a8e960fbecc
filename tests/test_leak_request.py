"""What memdiag asks the measured child to name: decided on saved snapshots, built by hand."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from memdiag.analysis.leaks import LeakSettings, attribution_request
from memdiag.model import SiteStat, Snapshot, TypeStat

KB = 1024
SITES = [[["/app/jobs.py", 40 + n]] for n in range(8)]


def _snap(i: int, per_site: list[int], buffer_bytes: int) -> Snapshot:
    """Iteration `i`: site n holds i * per_site[n] bytes of new Player objects; one buffer
    object (a `bytearray`) grows by `buffer_bytes` per iteration without new objects."""
    return Snapshot(
        label=f"iteration {i}",
        time_s=float(i),
        target="jobs.py:sync",
        rss_bytes=50 * 1024 * KB + i * (sum(per_site) + buffer_bytes),
        heap_bytes=i * (sum(per_site) + buffer_bytes),
        sites=[SiteStat(t, i * b, i * 10) for t, b in zip(SITES, per_site, strict=True)],
        types=[
            TypeStat("Player", 100 + i * 10 * len(per_site), i * sum(per_site)),
            TypeStat("bytearray", 1, i * buffer_bytes),
            TypeStat("str", 500, 20 * KB),
        ],
    )


def test_request_names_the_leading_sites_and_types_and_how_to_find_them() -> None:
    per_site = [(100 + 20 * n) * KB for n in range(8)]  # the last sites grow the most
    snaps = [_snap(i, per_site, 300 * KB) for i in range(8)]
    request = attribution_request(snaps, LeakSettings(), chains=3)
    assert request["chains"] == 3
    # the six leading sites, largest growth first
    assert request["sites"] == [f"/app/jobs.py:{47 - n}" for n in range(6)]
    by_name = {t["name"]: t["largest_at_least"] for t in request["types"]}
    assert set(by_name) == {"Player", "bytearray"}
    assert by_name["Player"] is None  # new objects every call: sampled at its sites
    # one object growing 300 KB a call over 5 intervals: objects of half that growth
    assert by_name["bytearray"] == 300 * KB * 5 / 2
    assert request["grown_types"] == ["Player"]  # only types with more live objects
    json.dumps(request)  # it travels to the child as JSON


def test_a_call_traced_in_slices_has_its_sites_sampled_below_the_threshold_too() -> None:
    """Traced in slices, 86% of the call's time but 40% of its objects (record-sync's): the
    site holding 1000 new strings a call, 55 KB traced, is below the 64 KB threshold as
    scaled by the time. It is sampled all the same, and a leak once the share is measured."""
    from memdiag.analysis.leaks import find_leaks

    def snap(i: int, last: bool) -> Snapshot:
        sites = [SiteStat([["/app/sync.py", 50]], 55_767, 400, 55_767, 400)] if last else []
        small = [SiteStat([["/app/sync.py", 60]], 2_000, 40, 2_000, 40)] if last else []
        return Snapshot(
            label=f"iteration {i}",
            time_s=float(i),
            target="sync.py:sync",
            rss_bytes=50 * 1024 * KB + i * 140 * KB,
            heap_bytes=i * 140 * KB,
            frames=4 if last else 0,
            sites=sites + small,
            types=[TypeStat("str", 1000 + i * 1000, i * 140 * KB)],
            traced_share=0.857 if last else None,
        )

    snaps = [snap(i, i == 7) for i in range(8)]
    request = attribution_request(snaps, LeakSettings())
    assert request["sites"] == ["/app/sync.py:50"]  # not the small one
    report = find_leaks(snaps, LeakSettings(), {"traced_objects": [400, 1000]})
    assert [s.site for s in report.sites] == ["/app/sync.py:50"]
    assert report.sites[0].objects_per_iteration == 1000


def test_nothing_leaking_asks_for_nothing() -> None:
    snaps = [_snap(i, [0] * 8, 0) for i in range(8)]
    request = attribution_request(snaps, LeakSettings())
    assert request["sites"] == [] and request["types"] == [] and request["grown_types"] == []


def test_a_rule_that_fails_still_answers_the_child_at_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Unanswered, the child waits 300 s for the request before it goes on.
    from memdiag.measure.python import driver, tracked

    def broken(*_: object, **__: object) -> dict[str, object]:
        raise KeyError("fields")

    monkeypatch.setattr(driver, "attribution_request", broken)
    (tmp_path / "iter-000.json").write_text(json.dumps(_snap(0, [KB] * 8, 0).to_dict()))
    with driver.AttributionRequester(tmp_path, LeakSettings(), every_s=0.01):
        (tmp_path / tracked.DONE_FILE).write_text("{}")
        deadline = time.monotonic() + 5
        while not (tmp_path / tracked.REQUEST_FILE).exists() and time.monotonic() < deadline:
            time.sleep(0.01)
    request = json.loads((tmp_path / tracked.REQUEST_FILE).read_text())
    assert request["sites"] == [] and request["types"] == []
    assert "the leak rule failed on the snapshots: KeyError('fields')" in capsys.readouterr().err


CANCELLED = """
import os, sys
from memdiag.measure.python import tracked

def last_copy_failed():
    raise RuntimeError("a snapshot's forked copy failed")

job = {"out": sys.argv[1], "request_wait_s": 300}
try:
    tracked._write_evidence(job, {}, last_copy_failed)
except RuntimeError as exc:
    print("raised:", exc)
try:
    os.waitpid(-1, os.WNOHANG)
    print("a copy is left")
except ChildProcessError:
    print("no copy left")
"""


def test_a_failed_last_snapshot_leaves_no_evidence_copy_waiting(tmp_path: Path) -> None:
    # The evidence's copy is forked before the last snapshot's copy is waited for: when
    # that one failed, the evidence's would wait 300 s for a request that never comes.
    import subprocess
    import sys

    began = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-c", CANCELLED, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["raised: a snapshot's forked copy failed", "no copy left"]
    assert time.monotonic() - began < 30
    assert not (tmp_path / "snapshots-done").exists()  # never said to be written
