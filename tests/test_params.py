"""Parameters match by value, whatever type they were written with."""

from __future__ import annotations

from typing import Any

import pytest

from memdiag.params import has_params, params_key, same_params


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ({"batch": 50}, {"batch": "50"}),
        ({"batch": 50}, {"batch": 50.0}),
        ({"rate": 0.5}, {"rate": "0.5"}),
        ({"fast": True}, {"fast": "true"}),
        ({"variant": "leaky", "batch": 1}, {"batch": "1", "variant": "leaky"}),
    ],
)
def test_equal_values_match(a: dict[str, Any], b: dict[str, Any]) -> None:
    assert same_params(a, b) and params_key(a) == params_key(b)
    assert hash(params_key(a)) == hash(params_key(b))


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ({"fast": True}, {"fast": 1}),
        ({"variant": "fixed"}, {"variant": "Fixed"}),
        ({"batch": 50}, {"batch": 51}),
        ({"batch": 50}, {"batch": 50, "extra": 1}),
        ({"batch": None}, {"batch": "None"}),
    ],
)
def test_different_values_do_not(a: dict[str, Any], b: dict[str, Any]) -> None:
    assert not same_params(a, b)


def test_ignore_and_subsets() -> None:
    assert same_params({"batch": 5, "variant": "a"}, {"batch": "5", "variant": "b"}, ["variant"])
    assert has_params({"batch": 50, "concurrency": 2}, {"batch": "50"})
    assert not has_params({"batch": 50}, {"batch": 50, "concurrency": 2})
