"""What a seed example's check reads inside the example's process: its `/metrics`, its trace file."""

from __future__ import annotations

import json
import re
import urllib.request
from typing import Any

import rfobs
from rfobs.traceview import load_spans

MARKER = "SEED-FACTS "
_SAMPLE = re.compile(r"^(?P<name>[a-zA-Z_:][\w:]*)(?:\{(?P<labels>.*)\})? (?P<value>\S+)$")
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def metrics(port: int) -> list[dict[str, Any]]:
    """The samples on `http://127.0.0.1:{port}/metrics`: name, labels (without otel_scope_*), value."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    samples: list[dict[str, Any]] = []
    for line in text.splitlines():
        if (match := _SAMPLE.match(line)) is None:
            continue
        labels = {k: v for k, v in _LABEL.findall(match["labels"] or "") if not k.startswith("otel_scope_")}
        samples.append({"name": match["name"], "labels": labels, "value": float(match["value"])})
    return samples


def span_names() -> list[str]:
    """Names of the spans in the trace file, once everything recorded so far is exported."""
    assert rfobs.flush(timeout=10)
    return sorted(span.name for span in load_spans(rfobs.get_settings().tracing.file_path))


def emit(**facts: Any) -> None:
    """Print the facts for the test (one marked JSON line)."""
    print(MARKER + json.dumps(facts, default=str), flush=True)
