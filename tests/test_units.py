from __future__ import annotations

import pytest

from memdiag.errors import MemdiagError
from memdiag.units import format_size, parse_params, parse_percent, parse_size, parse_value


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("512MB", 512 * 1024**2),
        ("1.5GB", int(1.5 * 1024**3)),
        ("256MiB", 256 * 1024**2),
        ("2gb", 2 * 1024**3),
        ("100 KB", 100 * 1024),
        ("1048576", 1048576),
    ],
)
def test_parse_size_is_binary(text: str, expected: int) -> None:
    assert parse_size(text) == expected


@pytest.mark.parametrize("text", ["12XB", "", "MB", "-5MB", "0", "1.2.3GB", "ten"])
def test_parse_size_rejects(text: str) -> None:
    with pytest.raises(MemdiagError):
        parse_size(text)


def test_format_size_round_trips_readably() -> None:
    assert format_size(512 * 1024**2) == "512.0 MB"
    assert format_size(1.5 * 1024**3) == "1.50 GB"
    assert format_size(-3 * 1024**2) == "-3.0 MB"
    assert format_size(None) == "-"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("50", 50),
        ("0.5", 0.5),
        ("true", True),
        ("False", False),
        ("fixed", "fixed"),
        ("1e3", 1000.0),
    ],
)
def test_parse_value_types(text: str, expected: object) -> None:
    value = parse_value(text)
    assert value == expected
    assert type(value) is type(expected)


def test_parse_params_rejects_duplicates_and_bad_shapes() -> None:
    assert parse_params(["batch=50", "variant=leaky"]) == {"batch": 50, "variant": "leaky"}
    assert parse_params(["db=sqlite:///x.db?a=b"]) == {"db": "sqlite:///x.db?a=b"}
    for bad in (["batch"], ["=3"], ["1x=3"], ["batch=1", "batch=2"]):
        with pytest.raises(MemdiagError):
            parse_params(bad)


def test_parse_percent() -> None:
    assert parse_percent("80%") == pytest.approx(0.8)
    assert parse_percent("0.75") == pytest.approx(0.75)
    assert parse_percent("1") == 1.0 and parse_percent(" 12.5 % ") == pytest.approx(0.125)
    assert parse_percent("150%", upper=10.0) == pytest.approx(1.5)
    for bad in ("150%", "0%", "x", "%", "-5%", "nan", "0"):
        with pytest.raises(MemdiagError):
            parse_percent(bad)


@pytest.mark.parametrize(
    ("text", "upper", "hint"),
    [
        ("10", 10.0, "--opt 10: a bare number is a fraction; write 10% or 0.1"),
        ("75", 1.0, "--opt 75: a bare number is a fraction; write 75% or 0.75"),
        ("1.5", 10.0, "--opt 1.5: a bare number is a fraction; write 1.5% or 0.015"),
    ],
)
def test_a_bare_number_above_one_is_an_error_with_a_hint(
    text: str, upper: float, hint: str
) -> None:
    with pytest.raises(MemdiagError) as caught:
        parse_percent(text, name="--opt", upper=upper)
    assert str(caught.value) == hint
