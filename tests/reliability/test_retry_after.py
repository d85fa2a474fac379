"""A server's Retry-After header is untrusted input: no value of it may crash `@retry` or stall it past a day."""

from __future__ import annotations

import math
import time
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime, formatdate

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tenacity import RetryCallState

from rfobs.exceptions import ConfigError, RateLimited
from rfobs.instrument._clock import SystemClock, VirtualClock
from rfobs.instrument._retry_strategies import MAX_WAIT
from rfobs.instrument.retry import RetryPolicy, retry_after_hint


class Response:
    def __init__(self, status_code: int, headers: dict[str, object]) -> None:
        self.status_code = status_code
        self.headers = headers


class ServerError(Exception):
    """Shaped like an HTTP client's status error: status and headers on `.response`."""

    def __init__(self, headers: dict[str, object], status_code: int = 503) -> None:
        super().__init__(f"HTTP {status_code}")
        self.response = Response(status_code, headers)


class StrictClock(VirtualClock):
    """A virtual clock that records each sleep and refuses what `time.sleep` could not do in a day."""

    def __init__(self) -> None:
        super().__init__()
        self.sleeps: list[float] = []

    def sleep(self, seconds: float) -> None:
        assert isinstance(seconds, float) and math.isfinite(seconds) and 0.0 <= seconds <= MAX_WAIT, seconds
        self.sleeps.append(seconds)
        super().sleep(seconds)


def fails_with(error: Exception) -> tuple[list[int], object]:
    calls = [0]

    def call() -> None:
        calls[0] += 1
        raise error

    return calls, call


def test_a_huge_retry_after_re_raises_the_original_error_on_the_real_clock() -> None:
    error = ServerError({"Retry-After": "99999999999"})
    calls, call = fails_with(error)
    policy = RetryPolicy(max_attempts=2, base_delay=0.0, max_delay=0.0, jitter="none", clock=SystemClock())
    with pytest.raises(ServerError) as raised:
        policy.call(call, (), {})  # pyright: ignore[reportArgumentType]
    assert raised.value is error
    assert calls == [2]


IN_A_YEAR = format_datetime(datetime.now(UTC) + timedelta(days=365), usegmt=True)
A_YEAR_AGO = format_datetime(datetime.now(UTC) - timedelta(days=365), usegmt=True)


@pytest.mark.parametrize(
    "value",
    [
        "-4",
        "-0.5",
        "nan",
        "NaN",
        "inf",
        "-inf",
        "infinity",
        "1e400",
        "1e3",
        "99999999999",
        "86400.001",
        str(10**400),
        "0x10",
        "1_000",
        "+5",
        "\uff11\uff12",  # fullwidth digits: float() reads them as 12
        "\u0661",  # an Arabic-Indic digit
        "5\x00",
        "5\r\nX-Injected: 1",
        "1" * 65,
        "soon",
        "",
        "   ",
        b"\xff\xfe",
        bytearray(b"\x80"),
        float("nan"),
        float("inf"),
        -1.0,
        -1,
        86400.5,
        1e300,
        10**400,
        True,
        ["5"],
        {"seconds": 5},
        object(),
        "Mon, 01 Jan 99999 00:00:00 GMT",
        "Fri, 31 Dec 9999 23:59:59 -2359",
        "Wed, 21 Oct 2015 07:28:00 +9999",
        "Thu, 01 Jan 1970 00:00:00 GMT",
        pytest.param(IN_A_YEAR, id="a date in a year"),
        pytest.param(A_YEAR_AGO, id="a date a year ago"),
    ],
    ids=repr,
)
def test_a_hostile_retry_after_value_is_no_hint(value: object) -> None:
    assert retry_after_hint(ServerError({"Retry-After": value})) is None


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"Retry-After": "0"}, 0.0),
        ({"Retry-After": " 7 "}, 7.0),
        ({"Retry-After": "2.5"}, 2.5),
        ({"Retry-After": b"5"}, 5.0),
        ({"Retry-After": "86400"}, MAX_WAIT),
        ({"Retry-After": 30}, 30.0),
        ({"retry-after-ms": "1500"}, 1.5),
        ({"retry-after-ms": "86400000"}, MAX_WAIT),
        ({"retry-after-ms": "86400001", "Retry-After": "3"}, 3.0),
        ({"retry-after-ms": "-1", "Retry-After": "4"}, 4.0),
        ({"retry-after-ms": "nan", "Retry-After": "nan"}, None),
    ],
    ids=repr,
)
def test_plausible_retry_after_values_are_honoured_exactly(headers: dict[str, object], expected: float | None) -> None:
    assert retry_after_hint(ServerError(headers)) == expected


def test_a_date_within_a_day_is_honoured_and_one_just_past_means_now() -> None:
    in_an_hour = retry_after_hint(ServerError({"Retry-After": formatdate(time.time() + 3600, usegmt=True)}))
    assert in_an_hour is not None and 3000.0 <= in_an_hour <= 3600.0
    a_minute_ago = formatdate(time.time() - 60, usegmt=True)
    assert retry_after_hint(ServerError({"Retry-After": a_minute_ago})) == 0.0


@pytest.mark.parametrize("value", [-1.0, float("nan"), float("inf"), 1e12, MAX_WAIT + 1])
def test_a_hostile_retry_after_attribute_is_no_hint(value: float) -> None:
    error = RateLimited("api", 1.0)
    error.retry_after = value
    assert retry_after_hint(error) is None


def test_a_custom_wait_is_clamped_to_what_sleep_can_do() -> None:
    delays = iter([1e300, float("nan"), -5.0, float("inf"), 1.0])  # tenacity asks once more before stopping

    def wild(_state: RetryCallState) -> float:
        return next(delays)

    clock = StrictClock()
    error = ConnectionError("reset")
    calls, call = fails_with(error)
    policy = RetryPolicy(max_attempts=5, wait=wild, clock=clock)
    with pytest.raises(ConnectionError) as raised:
        policy.call(call, (), {})  # pyright: ignore[reportArgumentType]
    assert raised.value is error
    assert calls == [5]
    assert clock.sleeps == [MAX_WAIT, 0.0, 0.0, MAX_WAIT]


@pytest.mark.parametrize("argument", ["base_delay", "max_delay"])
def test_a_delay_over_a_day_fails_at_construction(argument: str) -> None:
    options = {"base_delay": 1.0, "max_delay": 1e300, argument: 1e300}
    with pytest.raises(ConfigError) as raised:
        RetryPolicy(**options)  # pyright: ignore[reportArgumentType]
    assert str(raised.value).startswith(f"RetryPolicy({argument}=1e+300): expected a finite number of seconds >= 0")
    assert "<= 86400" in str(raised.value)


# ------------------------------------------------------------------------------------- property-based

_DATES = st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30), timezones=st.just(UTC)).map(
    lambda when: format_datetime(when, usegmt=True)
)
_NEAR_DATES = st.floats(min_value=-2 * MAX_WAIT, max_value=2 * MAX_WAIT).map(
    lambda offset: formatdate(time.time() + offset, usegmt=True)
)
HEADER_VALUES = st.one_of(
    st.text(max_size=80),
    st.text(alphabet="0123456789.-+eE ", max_size=24),
    st.binary(max_size=40),
    st.floats(),
    st.integers(),
    st.integers(min_value=0, max_value=10**14).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    _DATES,
    _NEAR_DATES,
    st.none(),
    st.booleans(),
)


def _is_hint(hint: object) -> bool:
    return hint is None or (type(hint) is float and math.isfinite(hint) and 0.0 <= hint <= MAX_WAIT)


@settings(max_examples=300, deadline=None)
@given(value=HEADER_VALUES, header=st.sampled_from(["Retry-After", "retry-after", "retry-after-ms"]))
def test_every_header_value_gives_no_hint_or_a_finite_wait_up_to_a_day(value: object, header: str) -> None:
    assert _is_hint(retry_after_hint(ServerError({header: value})))
    error = RateLimited("api", 1.0)
    error.retry_after = value  # pyright: ignore[reportAttributeAccessIssue]
    assert _is_hint(retry_after_hint(error))


@settings(max_examples=60, deadline=None)
@given(value=HEADER_VALUES, attempts=st.integers(min_value=1, max_value=4))
def test_retry_re_raises_the_original_error_whatever_the_header_says(value: object, attempts: int) -> None:
    clock = StrictClock()
    error = ServerError({"Retry-After": value})
    calls, call = fails_with(error)
    policy = RetryPolicy(max_attempts=attempts, base_delay=0.5, max_delay=2.0, clock=clock)
    with pytest.raises(ServerError) as raised:
        policy.call(call, (), {})  # pyright: ignore[reportArgumentType]
    assert raised.value is error
    assert calls == [attempts]
    assert len(clock.sleeps) == attempts - 1
