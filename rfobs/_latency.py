"""Latency samples per operation and their percentiles: the `Baseline` the SDK's own calls record into.

Kept out of `rfobs.health` (which imports asyncio) so the per-call hook in `rfobs.instrument` costs no import
time; `rfobs.health.baseline` re-exports it next to `PerformanceCheck`.
"""

from __future__ import annotations

import contextlib
import math
import os
import threading
import time
from collections import deque
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Final, Protocol, TypedDict, cast

from rfobs import _check, _state

__all__ = ["Baseline", "Percentiles", "default_recent", "percentile", "record_call_latencies", "recorder"]

PathArg = str | os.PathLike[str]

_FORMAT_VERSION: Final = 1
_INF: Final = math.inf


class Percentiles(TypedDict):
    """Latency figures of one operation, in seconds; `count` is the number of samples they come from."""

    p50: float
    p95: float
    count: int


class _TimedSpan(Protocol):
    """What `Baseline.record_spans` reads from a span (`rfobs.traceview.load_spans` returns such spans)."""

    @property
    def name(self) -> str: ...

    @property
    def duration_ns(self) -> int: ...


def percentile(ordered: Sequence[float], fraction: float) -> float:
    """The `fraction` quantile of sorted values, interpolating linearly between neighbours (numpy's default)."""
    position = fraction * (len(ordered) - 1)
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


class Baseline:
    """Recent latency samples per operation, and their p50/p95.

    Thread-safe: `record` may be called from any thread (it appends to a bounded deque, which is atomic);
    `snapshot`, `save` and `load` take a lock.

    Args:
        window: Samples kept per operation (the most recent ones).
        max_operations: Operations tracked; samples of further operations are dropped, so an unbounded set of
            operation names cannot grow memory without limit.

    Raises:
        ConfigError: `window` or `max_operations` is not a positive integer.
    """

    def __init__(self, window: int = 1000, *, max_operations: int = 256) -> None:
        self.window = _check.integer("Baseline", "window", window, ge=1)
        self.max_operations = _check.integer("Baseline", "max_operations", max_operations, ge=1)
        self._samples: dict[str, deque[float]] = {}
        self._fixed: dict[str, Percentiles] = {}
        self._lock = threading.Lock()

    def record(self, operation: str, seconds: float) -> None:
        """Add one latency sample; negative, infinite and NaN values are ignored (a float never raises)."""
        if not 0.0 <= seconds < _INF:
            return
        samples = self._samples.get(operation)
        if samples is None:
            with self._lock:
                samples = self._samples.get(operation)
                if samples is None:
                    if len(self._samples) >= self.max_operations:
                        return
                    samples = self._samples[operation] = deque(maxlen=self.window)
        samples.append(seconds)

    def record_spans(self, spans: Iterable[_TimedSpan]) -> None:
        """Record each span's duration under its name, e.g. the spans of a trace file read back."""
        for span in spans:
            self.record(span.name, span.duration_ns / 1e9)

    def snapshot(self) -> dict[str, Percentiles]:
        """p50, p95 and sample count of each operation, by name (sorted)."""
        figures: dict[str, Percentiles] = dict(self._fixed)
        for operation, samples in self._copy().items():
            ordered = sorted(samples)
            figures[operation] = {
                "p50": percentile(ordered, 0.50),
                "p95": percentile(ordered, 0.95),
                "count": len(ordered),
            }
        return dict(sorted(figures.items()))

    def clear(self) -> None:
        """Forget every sample."""
        with self._lock:
            self._samples.clear()
            self._fixed.clear()

    def save(self, path: PathArg) -> None:
        """Write the snapshot and the samples behind it to a JSON file, atomically (temp file, then rename).

        Raises:
            OSError: The file or its directory cannot be written.
        """
        samples = self._copy()
        operations: dict[str, dict[str, Any]] = {}
        for operation, figures in self.snapshot().items():
            entry: dict[str, Any] = dict(figures)
            if operation in samples:
                entry["samples"] = [round(value, 9) for value in samples[operation]]
            operations[operation] = entry
        import json

        document = {
            "version": _FORMAT_VERSION,
            "saved_at": time.time(),
            "window": self.window,
            "operations": operations,
        }
        _write_atomically(Path(path), json.dumps(document, indent=1) + "\n")

    @classmethod
    def load(cls, path: PathArg) -> Baseline:
        """Read a file written by `save`.

        An operation saved with its samples gets them back (so a loaded baseline can be extended and saved
        again); one given only as `p50`/`p95`/`count` (written by hand) keeps those figures.

        Raises:
            FileNotFoundError: No such file.
            OSError: It cannot be read.
            ValueError: It is not a baseline file; the message says what is wrong.
        """
        import json

        parsed: object = json.loads(Path(path).read_text(encoding="utf-8"))
        where = f"baseline file {os.fspath(path)!r}"
        document = cast("dict[str, Any]", parsed) if isinstance(parsed, dict) else {}
        if not isinstance(document.get("operations"), dict):
            raise ValueError(f"{where}: expected a JSON object with an 'operations' object")
        window = document.get("window", 1000)
        baseline = cls(window if isinstance(window, int) and not isinstance(window, bool) and window > 0 else 1000)
        for operation, entry in cast("dict[str, Any]", document["operations"]).items():
            baseline._restore(operation, entry, where)
        return baseline

    def _restore(self, operation: str, entry: object, where: str) -> None:
        fields = cast("dict[str, object]", entry) if isinstance(entry, dict) else {}
        samples = fields.get("samples")
        if isinstance(samples, list) and all(_is_seconds(value) for value in cast("list[object]", samples)):
            self._samples[operation] = deque(cast("list[float]", samples), maxlen=self.window)
            return
        p50, p95, count = fields.get("p50"), fields.get("p95"), fields.get("count")
        if not (_is_seconds(p50) and _is_seconds(p95) and isinstance(count, int) and not isinstance(count, bool)):
            raise ValueError(f"{where}: operation {operation!r} needs 'samples' or numeric 'p50', 'p95' and 'count'")
        self._fixed[operation] = {"p50": float(cast(float, p50)), "p95": float(cast(float, p95)), "count": count}

    def _copy(self) -> dict[str, tuple[float, ...]]:
        with self._lock:
            items = list(self._samples.items())
        copies: dict[str, tuple[float, ...]] = {}
        for operation, samples in items:
            while True:
                try:
                    copies[operation] = tuple(samples)
                    break
                except RuntimeError:  # appended to while copying (free-threaded builds); copy again
                    continue
        return copies

    def __repr__(self) -> str:
        return f"Baseline(window={self.window}, operations={len(self._samples) + len(self._fixed)})"


def _is_seconds(value: object) -> bool:
    return not isinstance(value, bool) and isinstance(value, (int, float)) and 0 <= value < _INF


def _write_atomically(target: Path, text: str) -> None:
    import tempfile

    target.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as file:
            file.write(text)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise


_default_recent = Baseline()
recorder: Baseline | None = None
"""Where every decorated call records its duration, or None (the default: the hot path then records nothing)."""


def default_recent() -> Baseline:
    """The process-wide `Baseline` of recent timings that the SDK's own task and API-call spans are recorded into."""
    return _default_recent


def record_call_latencies(into: Baseline | None) -> None:
    """Have every decorated call record its duration into `into` from now on (None: stop).

    The performance health check turns this on when it is built: without one, nobody reads the timings.
    """
    global recorder
    recorder = into


_state.on_reset(lambda: record_call_latencies(None))
