"""The secret scrubber runs in linear time: 1 MB of text built against its patterns takes well under 2 s (#9).

Before the fix one unbroken run of letters took 0.04 s at 1,000 characters, 6.4 s at 10,000 and 19 s at
20,000, holding the GIL throughout. Each text below is one short unit repeated: runs of letters, hex and
digits, separators, half-finished keys, quotes, token prefixes, PEM headers, and so on.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from rfobs._secrets import scrub_text

ADVERSARIAL: dict[str, str] = {
    "letters": "a",
    "hex": "0123456789abcdef",
    "digits": "7",
    "equals": "=",
    "colons": ":",
    "spaces": " ",
    "a=a=": "a=",
    "a: a: ": "a: ",
    "quotes": "\"'",
    "backslash-quotes": '\\"password\\":\\"',
    "words": "lorem ipsum dolor sit amet ",
    "mixed token chars": "aA0_-.",
    "base64": "QUJD+/==",
    "key=": "key=",
    "token=": "token=",
    "password=": "password=",
    'password="': 'password="',
    "tokentoken": "token",
    "api_key": "api_key",
    "authorization: ": "authorization: ",
    "cookie: a=b; ": "cookie: a=b; ",
    "<password>": "<password>",
    "--token ": "--token ",
    "bearer bearer": "bearer ",
    "Bearer Bearer": "Bearer ",
    "basic base64": "basic QUJDRA== ",
    "eyJ": "eyJ",
    "eyJ segments": "eyJaaaaaaaaa.",
    "://": "://",
    "://a:": "://a:",
    "://u:p": "://u:p",
    "@": "@",
    "PEM BEGIN": "-----BEGIN RSA PRIVATE KEY-----",
    "AIza": "AIza",
    "sk-": "sk-",
    "ghp_": "ghp_",
    "SG.": "SG.",
    "ATATT=": "ATATT=",
    "telegram": "12345678:AA",
}

MEGABYTE = 1_000_000


def repeated(unit: str, size: int) -> str:
    return (unit * (size // len(unit) + 1))[:size]


def fastest(action: Callable[[], object], runs: int) -> float:
    times: list[float] = []
    for _ in range(runs):
        started = time.perf_counter()
        action()
        times.append(time.perf_counter() - started)
    return min(times)


@pytest.mark.parametrize("unit", ADVERSARIAL.values(), ids=ADVERSARIAL.keys())
def test_adversarial_text_scrubs_in_linear_time(unit: str) -> None:
    small, large = repeated(unit, 50_000), repeated(unit, MEGABYTE)
    small_time = fastest(lambda: scrub_text(small), 3)
    large_time = fastest(lambda: scrub_text(large), 1)
    if large_time > 0.1:
        large_time = min(large_time, fastest(lambda: scrub_text(large), 1))
    assert large_time < 2.0
    # 1 MB is 20 times 50 KB: linear work takes ~20 times as long (up to twice that with caches and timer noise);
    # quadratic work would take 400 times. Under 0.1 s there is no quadratic term worth the name.
    assert large_time < max(40 * small_time, 0.1), f"50 KB: {small_time:.4f} s, 1 MB: {large_time:.4f} s"


def test_a_megabyte_of_every_adversarial_unit_together() -> None:
    text = "".join(repeated(unit, MEGABYTE // len(ADVERSARIAL)) for unit in ADVERSARIAL.values())
    assert len(text) > 0.99 * MEGABYTE
    assert fastest(lambda: scrub_text(text), 1) < 2.0


def test_ordinary_text_scrubs_at_tens_of_microseconds_per_kilobyte() -> None:
    line = 'File "/srv/agent/tools/search.py", line 42, in run: result = client.search(query, limit=10)\n'
    text = repeated(line, 100_000)
    seconds = fastest(lambda: scrub_text(text), 5)
    # Measured at about 10-20 µs/KB (the old scrubber: about 600 µs/KB); the bound leaves room for slow machines.
    assert seconds / 100 < 300e-6
    assert scrub_text(text) == text
