"""Cost of the secret scrubber per KB: ordinary text, text with secrets, adversarial text; old against new (#9).

Run: .venv/bin/python benchmarks/bench_scrub.py
"old" is the single-regex scrubber rfobs had before #9, reproduced below; it is quadratic on a long run of
letters, so it runs on 2 KB and 8 KB of adversarial text only (the growth between the two shows the square),
while the new one runs on 1 MB. Each figure is the fastest of several runs.
"""

from __future__ import annotations

import re
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from rfobs._secrets import scrub_text
from tests.reliability.secret_corpus import CORPUS

_OLD_KEY = re.compile(r"pass(word|wd)?|secret|token|api[-_]?key|auth|credential|private[-_]?key|cookie|session")
_OLD_TEXT = re.compile(
    r"(?i)(?P<key>[\w.-]*(?:pass(?:word|wd)?|secret|token|api[-_]?key|authorization)[\w.-]*)"
    r"(?P<sep>['\"]?\s*[=:]\s*)(?P<q>['\"]?)(?P<val>(?:bearer\s+)?[^\s'\",;&}]+)"
    r"|(?P<bearer>\bbearer\s+)[A-Za-z0-9._~+/=-]{8,}"
    r"|\b(?:sk|pk|rk)-[A-Za-z0-9_-]{16,}"
    r"|\bgh[pousr]_[A-Za-z0-9]{20,}"
    r"|\bAKIA[0-9A-Z]{16}\b"
)


def old_scrub_text(text: str) -> str:
    """The scrubber before #9."""

    def replace(match: re.Match[str]) -> str:
        key = match.group("key")
        if key and not (_OLD_KEY.search(key.lower()) and not key.lower().endswith("tokens")):
            return match.group(0)
        if key:
            return f"{key}{match.group('sep')}{match.group('q')}***"
        if match.group("bearer"):
            return f"{match.group('bearer')}***"
        return "***"

    return _OLD_TEXT.sub(replace, text)


def repeated(unit: str, size: int) -> str:
    return (unit * (size // len(unit) + 1))[:size]


def ns_per_kb(scrub: Callable[[str], str], text: str, runs: int = 5) -> float:
    best = float("inf")
    for _ in range(runs):
        started = time.perf_counter_ns()
        scrub(text)
        best = min(best, time.perf_counter_ns() - started)
    return best / (len(text) / 1024)


ORDINARY = repeated(
    "Traceback (most recent call last):\n"
    '  File "/srv/agent/tools/search.py", line 42, in run\n'
    "    result = client.search(query, limit=10)\n"
    "ValueError: upstream returned 502 for query 'llm agents' after 3 attempts (input_tokens: 1234)\n"
    "2026-01-05 10:00:01 INFO researcher.search: found 12 results in 0.84 s; next step: summarise\n",
    100_000,
)
WITH_SECRETS = repeated("\n".join(f"{shape.text}\n{ORDINARY[:300]}" for shape in CORPUS), 100_000)
ADVERSARIAL = {
    "letters": "a",
    "hex": "0123456789abcdef",
    "a=a=": "a=",
    "key=": "key=",
    "password=": "password=",
    "bearer ": "bearer ",
    "quotes": "\"'",
}


def main() -> None:
    print(f"{'text':<28}{'new ns/KB':>12}{'old ns/KB':>14}")
    for name, text in (("ordinary (100 KB)", ORDINARY), ("with secrets (100 KB)", WITH_SECRETS)):
        print(f"{name:<28}{ns_per_kb(scrub_text, text):>12,.0f}{ns_per_kb(old_scrub_text, text):>14,.0f}")
    worst = 0.0
    for name, unit in ADVERSARIAL.items():
        new = ns_per_kb(scrub_text, repeated(unit, 1_000_000), runs=2)
        worst = max(worst, new)
        old = [ns_per_kb(old_scrub_text, repeated(unit, size), runs=1) for size in (2_000, 8_000)]
        print(f"{'adversarial ' + name + ' (1 MB)':<28}{new:>12,.0f}{'':>4}2 KB: {old[0]:,.0f}  8 KB: {old[1]:,.0f}")
    print(f"worst adversarial, new: {worst:,.0f} ns/KB = {worst * 1024 / 1e9:.2f} s per MB")


if __name__ == "__main__":
    main()
