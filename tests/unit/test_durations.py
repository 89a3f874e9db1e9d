"""Human durations: parsing, formatting and the round trip between them."""

from __future__ import annotations

import pytest

from flowctl.domain.durations import format_duration, parse_duration


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("500ms", 0.5),
        ("1ms", 0.001),
        ("1.5ms", 0.0015),
        ("0.5ms", 0.0005),
        ("1s", 1.0),
        ("1.5s", 1.5),
        ("30s", 30.0),
        ("5m", 300.0),
        ("1h", 3600.0),
        ("2d", 172800.0),
        ("1h30m", 5400.0),
        ("1m30s", 90.0),
        ("1h1m1s1ms", 3661.001),
        ("1.1h", 3960.0),
        ("0s", 0.0),
        ("0", 0.0),
        ("10", 10.0),
        ("2.5", 2.5),
        (" 5m ", 300.0),
        ("5M", 300.0),
        ("1H30M", 5400.0),
        ("250MS", 0.25),
    ],
)
def test_valid_strings(text: str, seconds: float) -> None:
    result = parse_duration(text)
    assert result == seconds
    assert isinstance(result, float)


@pytest.mark.parametrize(("number", "seconds"), [(0, 0.0), (5, 5.0), (1.25, 1.25), (3600, 3600.0)])
def test_numbers_are_seconds(number: float, seconds: float) -> None:
    result = parse_duration(number)
    assert result == seconds
    assert isinstance(result, float)


@pytest.mark.parametrize(
    "text",
    [
        "abc",
        "s",
        "ms",
        "5x",
        "5 m",
        "1h 30m",
        "-5s",
        "-5",
        "+5s",
        "1.s",
        ".5s",
        "1.5.5s",
        "5sec",
        "5mins",
        "1e3",
        "1e3s",
        "PT5M",
        "5m!",
        "nan",
        "inf",
        "1,5s",
    ],
)
def test_invalid_strings_raise(text: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_duration(text)
    message = str(info.value)
    assert repr(text) in message or "negative" in message


def test_invalid_string_message_shows_the_accepted_forms() -> None:
    with pytest.raises(ValueError) as info:
        parse_duration("soon")
    assert "'soon'" in str(info.value)
    assert "'500ms'" in str(info.value)
    assert "'1h30m'" in str(info.value)


@pytest.mark.parametrize("text", ["", "   "])
def test_empty_string_raises(text: str) -> None:
    with pytest.raises(ValueError, match="must not be empty"):
        parse_duration(text)


@pytest.mark.parametrize("value", [True, False, None, [1], {"s": 1}, b"5s"])
def test_wrong_types_raise(value: object) -> None:
    with pytest.raises(ValueError, match="a duration must be"):
        parse_duration(value)  # type: ignore[arg-type]


@pytest.mark.parametrize("value", [-1, -0.001])
def test_negative_numbers_raise(value: float) -> None:
    with pytest.raises(ValueError, match="must not be negative"):
        parse_duration(value)


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_numbers_raise(value: float) -> None:
    # JSON's 1e999 arrives as inf; it must be a 422, not a crash when echoed back.
    with pytest.raises(ValueError, match="finite"):
        parse_duration(value)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "0s"),
        (0.0, "0s"),
        (0.001, "1ms"),
        (0.25, "250ms"),
        (0.5, "500ms"),
        (0.0015, "1.5ms"),
        (0.0005, "0.5ms"),
        (1, "1s"),
        (1.0, "1s"),
        (1.5, "1.5s"),
        (30, "30s"),
        (59, "59s"),
        (60, "1m"),
        (90, "90s"),
        (300, "5m"),
        (3600, "1h"),
        (5400, "90m"),
        (7200, "2h"),
        (86400, "24h"),
        (3601, "3601s"),
        (90.5, "90.5s"),
        (1234567.5, "1234567.5s"),
    ],
)
def test_format(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


@pytest.mark.parametrize(
    "seconds",
    [
        0.0,
        0.0001,
        0.0005,
        0.001,
        0.0015,
        0.123,
        0.3,
        0.999,
        1.0,
        1.1,
        2.5,
        59.999,
        60.0,
        90.0,
        100000.5,
        1234567.5,
        3600.0,
        5400.0,
        86400.0,
        1e9,
    ],
)
def test_round_trip_from_seconds(seconds: float) -> None:
    text = format_duration(seconds)
    assert "e" not in text  # never exponent notation, which would not parse back
    assert parse_duration(text) == seconds


@pytest.mark.parametrize(
    "text", ["500ms", "1.5ms", "1s", "1.5s", "30s", "90s", "5m", "90m", "1h", "24h"]
)
def test_canonical_strings_round_trip(text: str) -> None:
    assert format_duration(parse_duration(text)) == text


@pytest.mark.parametrize(
    ("text", "canonical"), [("60s", "1m"), ("1h30m", "90m"), ("3600", "1h"), ("1000ms", "1s")]
)
def test_equivalent_spellings_format_canonically(text: str, canonical: str) -> None:
    assert format_duration(parse_duration(text)) == canonical
