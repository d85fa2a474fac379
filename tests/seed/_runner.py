"""Run one seed example as its users wrote it, then a check, in one namespace (a subprocess per example).

Usage: `python _runner.py EXAMPLE SPEC_JSON`. SPEC holds `ports` (the seed's fixed ports, 9090 and 3001, and the
free loopback ports the test gives instead), `given` (what the example assumes exists, such as `my_function`,
run before it) and `check` (run after it, printing what the test asserts). The example and the check may use
top-level `await`, as the seed's snippets do; they run as the asyncio REPL runs them.
"""

from __future__ import annotations

import ast
import asyncio
import json
import sys
from pathlib import Path
from typing import Any


def run(source: str, namespace: dict[str, Any], filename: str) -> None:
    code = compile(source, filename, "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
    result = eval(code, namespace)
    if asyncio.iscoroutine(result):
        asyncio.run(result)


def main() -> None:
    example = Path(sys.argv[1])
    spec = json.loads(sys.argv[2])
    source = example.read_text(encoding="utf-8")
    for fixed, free in spec.get("ports", {}).items():
        source = source.replace(fixed, str(free))
    namespace: dict[str, Any] = {"__name__": "__main__", "__file__": str(example)}
    run(spec.get("given", ""), namespace, "<given>")
    run(source, namespace, str(example))
    run(spec.get("check", ""), namespace, "<check>")


if __name__ == "__main__":
    main()
