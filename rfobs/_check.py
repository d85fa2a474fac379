"""Argument checks shared by every constructor and decorator: each returns the checked value or raises `ConfigError`.

Every message has one shape, `owner(argument=value!r): expected what-is-allowed`, so a user sees which call,
which argument, what they passed and what would do, whichever part of rfobs refused it. `owner` is the call as the
user wrote it: `RateLimiter`, `@timeout`, `HealthServer`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Iterable
from typing import Any, TypeVar, cast

from rfobs.exceptions import ConfigError

__all__ = ["bad", "exception_types", "flag", "function", "integer", "number", "one_of", "options", "text"]

T = TypeVar("T")


def bad(owner: str, argument: str, value: Any, allowed: str) -> ConfigError:
    """The error for `owner(argument=value)`: `value` is shown with `repr` (pass it redacted if it may be secret).

    `value` is `Any` because callers pass it after `isinstance` checks have narrowed it to partly unknown types.
    """
    return ConfigError(f"{owner}({argument}={value!r}): expected {allowed}")


def _bounds(gt: float | None, ge: float | None, lt: float | None, le: float | None) -> str:
    parts = [f"{sign} {bound:g}" for sign, bound in ((">", gt), (">=", ge), ("<", lt), ("<=", le)) if bound is not None]
    return " and ".join(parts)


def number(
    owner: str,
    argument: str,
    value: object,
    *,
    gt: float | None = None,
    ge: float | None = None,
    lt: float | None = None,
    le: float | None = None,
    finite: bool = True,
    what: str = "a number",
    allowed: str | None = None,
) -> float:
    """`value` as a float: an int or a float (not a bool, not NaN), finite unless `finite=False`, within the bounds.

    Args:
        owner: The call as the user wrote it (`RateLimiter`, `@timeout`).
        argument: The argument's name.
        value: What was passed.
        gt: Exclusive lower bound.
        ge: Inclusive lower bound.
        lt: Exclusive upper bound.
        le: Inclusive upper bound.
        finite: Refuse an infinity.
        what: The noun of the message (`"a finite number of seconds"`), followed by the bounds.
        allowed: The whole "expected ..." text, when the bounds alone would not explain the argument.

    Raises:
        ConfigError: Not a number, or out of range.
    """
    try:
        real = math.nan if isinstance(value, bool) or not isinstance(value, int | float) else float(value)
    except OverflowError:  # an int beyond a float's range
        real = math.nan
    ok = not math.isnan(real) and (not finite or not math.isinf(real))
    if ok and ((gt is not None and real <= gt) or (ge is not None and real < ge)):
        ok = False
    if ok and ((lt is not None and real >= lt) or (le is not None and real > le)):
        ok = False
    if not ok:
        condition = _bounds(gt, ge, lt, le)
        raise bad(owner, argument, value, allowed or (f"{what} {condition}" if condition else what))
    return real


def integer(
    owner: str,
    argument: str,
    value: object,
    *,
    ge: int | None = None,
    le: int | None = None,
    allowed: str | None = None,
) -> int:
    """`value` if it is an int (not a bool) within `[ge, le]`.

    Raises:
        ConfigError: Not an int, or out of range; the message says "an integer >= ge" unless `allowed` is given.
    """
    if (
        isinstance(value, bool)
        or not isinstance(value, int)
        or (ge is not None and value < ge)
        or (le is not None and value > le)
    ):
        condition = _bounds(None, ge, None, le)
        raise bad(owner, argument, value, allowed or (f"an integer {condition}" if condition else "an integer"))
    return value


def text(owner: str, argument: str, value: object, allowed: str = "a non-empty string") -> str:
    """`value` stripped of surrounding blanks, if it is a string with something else in it.

    Raises:
        ConfigError: Not a string, or empty or blank.
    """
    if not isinstance(value, str) or not value.strip():
        raise bad(owner, argument, value, allowed)
    return value.strip()


def flag(owner: str, argument: str, value: object) -> bool:
    """`value` if it is a bool.

    Raises:
        ConfigError: Anything else, including 0 and 1.
    """
    if not isinstance(value, bool):
        raise bad(owner, argument, value, "True or False")
    return value


def one_of(owner: str, argument: str, value: object, choices: Collection[T]) -> T:
    """`value` if it equals one of `choices` (`'a' or 'b'`, or `one of 'a', 'b', 'c'` in the message).

    Raises:
        ConfigError: Anything else.
    """
    if value not in choices:
        shown = [repr(choice) for choice in choices]
        allowed = " or ".join(shown) if len(shown) == 2 else f"one of {', '.join(shown)}"
        raise bad(owner, argument, value, allowed)
    return cast("T", value)


def function(owner: str, argument: str, value: object, allowed: str = "a callable") -> Callable[..., Any]:
    """`value` if it can be called.

    Raises:
        ConfigError: It cannot.
    """
    if not callable(value):
        raise bad(owner, argument, value, allowed)
    return cast("Callable[..., Any]", value)


def exception_types(
    owner: str, argument: str, value: object, base: type[BaseException] = BaseException, allowed: str | None = None
) -> tuple[type[Any], ...]:
    """`value` (an exception class or a tuple of them, subclasses of `base`) as a tuple.

    Raises:
        ConfigError: Anything else, such as an instance, a string or a class that is not an exception.
    """
    items = cast("tuple[object, ...]", value) if isinstance(value, tuple) else (value,)
    for item in items:
        if not isinstance(item, type) or not issubclass(item, base):
            raise bad(owner, argument, value, allowed or f"a {base.__name__} subclass or a tuple of them")
    return cast("tuple[type[Any], ...]", items)


def options(owner: str, given: Iterable[str], known: Collection[str]) -> None:
    """Refuse keyword arguments outside `known`, naming the first with the closest known name as a suggestion.

    Raises:
        ConfigError: `given` holds a name that is not in `known`.
    """
    unknown = sorted(set(given) - set(known))
    if not unknown:
        return
    import difflib  # only on the error path

    close = difflib.get_close_matches(unknown[0], known, n=1)
    hint = f"; did you mean {close[0]}=?" if close else ""
    raise ConfigError(
        f"{owner}({unknown[0]}=...): unknown option{hint} (unknown argument(s) {unknown!r}; "
        f"options: {', '.join(known)})"
    )
