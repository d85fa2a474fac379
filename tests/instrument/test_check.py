"""`rfobs._check`: the shared argument checks return the value or raise one uniform `ConfigError`.

(The checks serve all of rfobs; their tests sit with the policies, their first users.)
"""

from __future__ import annotations

import math
from collections.abc import Callable

import pytest

from rfobs import _check
from rfobs.exceptions import ConfigError


def message(check: Callable[[], object]) -> str:
    with pytest.raises(ConfigError) as raised:
        check()
    return str(raised.value)


def test_a_number_is_an_int_or_float_returned_as_a_float_within_its_bounds() -> None:
    assert _check.number("Thing", "rate", 3, gt=0) == 3.0
    assert isinstance(_check.number("Thing", "rate", 3, gt=0), float)
    assert _check.number("Thing", "ratio", 1, gt=0, le=1) == 1.0
    assert _check.number("Thing", "wait", math.inf, ge=0, finite=False) == math.inf
    assert message(lambda: _check.number("Thing", "rate", 0, gt=0)) == "Thing(rate=0): expected a number > 0"
    assert message(lambda: _check.number("Thing", "seconds", 2, gt=0, le=1, what="a finite number of seconds")) == (
        "Thing(seconds=2): expected a finite number of seconds > 0 and <= 1"
    )
    assert message(lambda: _check.number("Thing", "ratio", 0, gt=0, le=1, allowed="a number in (0, 1]")) == (
        "Thing(ratio=0): expected a number in (0, 1]"
    )


@pytest.mark.parametrize("value", [True, False, "1", None, [1], math.nan, math.inf, -math.inf, 10**400])
def test_a_number_refuses_bools_text_nan_infinities_and_ints_beyond_a_float(value: object) -> None:
    assert message(lambda: _check.number("Thing", "rate", value)).startswith(f"Thing(rate={value!r}): expected")


def test_an_integer_is_an_int_within_its_bounds_and_never_a_bool() -> None:
    assert _check.integer("Thing", "window", 20, ge=1) == 20
    assert _check.integer("Thing", "port", 0, ge=0, le=65535) == 0
    assert message(lambda: _check.integer("Thing", "window", 0, ge=1)) == "Thing(window=0): expected an integer >= 1"
    assert message(lambda: _check.integer("Thing", "window", True, ge=1)).startswith("Thing(window=True)")
    assert message(lambda: _check.integer("Thing", "window", 2.0, ge=1)).startswith("Thing(window=2.0)")
    assert message(lambda: _check.integer("Thing", "port", 70000, ge=0, le=65535)) == (
        "Thing(port=70000): expected an integer >= 0 and <= 65535"
    )


def test_text_is_stripped_and_must_not_be_blank() -> None:
    assert _check.text("Thing", "name", "  search ") == "search"
    assert message(lambda: _check.text("Thing", "name", " ")) == "Thing(name=' '): expected a non-empty string"
    assert message(lambda: _check.text("Thing", "name", b"x", "a name")) == "Thing(name=b'x'): expected a name"


def test_one_of_names_the_choices() -> None:
    assert _check.one_of("Thing", "mode", "wait", ("wait", "reject")) == "wait"
    assert message(lambda: _check.one_of("Thing", "mode", "queue", ("wait", "reject"))) == (
        "Thing(mode='queue'): expected 'wait' or 'reject'"
    )
    assert message(lambda: _check.one_of("Thing", "jitter", "half", ("none", "full", "equal"))) == (
        "Thing(jitter='half'): expected one of 'none', 'full', 'equal'"
    )


def test_flags_functions_and_exception_types() -> None:
    assert _check.flag("Thing", "enabled", False) is False
    assert message(lambda: _check.flag("Thing", "enabled", 1)) == "Thing(enabled=1): expected True or False"
    assert _check.function("Thing", "key", len) is len
    assert message(lambda: _check.function("Thing", "key", 3)) == "Thing(key=3): expected a callable"
    assert _check.exception_types("Thing", "retry_on", KeyError) == (KeyError,)
    assert _check.exception_types("Thing", "retry_on", (KeyError, OSError), Exception) == (KeyError, OSError)
    assert message(lambda: _check.exception_types("Thing", "retry_on", KeyboardInterrupt, Exception)) == (
        "Thing(retry_on=<class 'KeyboardInterrupt'>): expected a Exception subclass or a tuple of them"
    )
    assert message(lambda: _check.exception_types("Thing", "ignore", (KeyError, "x"), allowed="exceptions")) == (
        "Thing(ignore=(<class 'KeyError'>, 'x')): expected exceptions"
    )


def test_unknown_options_are_named_with_the_closest_known_one() -> None:
    _check.options("Thing", {"rate": 1}, ("rate", "burst"))
    assert message(lambda: _check.options("Thing", {"brust": 1, "zzz": 2}, ("rate", "burst"))) == (
        "Thing(brust=...): unknown option; did you mean burst=? (unknown argument(s) ['brust', 'zzz']; "
        "options: rate, burst)"
    )
    assert message(lambda: _check.options("Thing", {"zzz": 2}, ("rate",))).startswith(
        "Thing(zzz=...): unknown option (unknown argument(s) ['zzz']"
    )


def test_a_secret_in_the_value_is_scrubbed_like_every_config_error() -> None:
    token = "sk-" + "a1B2" * 12
    assert token not in message(lambda: _check.integer("Thing", "window", token))
