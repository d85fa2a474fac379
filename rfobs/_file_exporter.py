"""Append finished spans to a local, size-bounded OTLP/JSON-lines file (the embedded default)."""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Sequence
from pathlib import Path

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from rfobs._otlp_json import encode_otlp_json
from rfobs._process import at_fork_in_child

__all__ = ["OtlpJsonFileSpanExporter"]

_logger = logging.getLogger("rfobs")


class OtlpJsonFileSpanExporter(SpanExporter):
    """Span exporter that appends each batch as one OTLP/JSON line to a rotating file.

    The file can be read back by `rfobs traces` or by the OpenTelemetry Collector's
    `otlpjsonfile` receiver. Export is thread-safe; several processes may append to the same file
    (each line is written with a single `O_APPEND` write), although rotation between processes is
    best effort. Export never raises: failures are logged on the `rfobs` logger and reported as
    `SpanExportResult.FAILURE`.

    Args:
        path: The file to append to. Missing parent directories are created on first write.
        max_bytes: Rotate before a write would take the file past this size; 0 disables rotation.
            A single batch larger than this still gets written, to a file of its own.
        backup_count: How many rotated files (`path.1` newest ... `path.N` oldest) to keep;
            0 truncates the file instead.

    Raises:
        ValueError: If `max_bytes` or `backup_count` is negative.
    """

    def __init__(
        self, path: str | os.PathLike[str], *, max_bytes: int = 50 * 1024 * 1024, backup_count: int = 3
    ) -> None:
        if max_bytes < 0:
            msg = f"max_bytes must be >= 0 (0 disables rotation), got {max_bytes!r}"
            raise ValueError(msg)
        if backup_count < 0:
            msg = f"backup_count must be >= 0 (0 truncates on rotation), got {backup_count!r}"
            raise ValueError(msg)
        self.path = Path(path)
        self.max_bytes = max_bytes
        self.backup_count = backup_count
        self._lock = threading.Lock()
        self._shutdown = False
        # A fork while the parent's export thread held the lock would leave the child's copy locked forever.
        # The file is reopened for every batch, so a fresh lock is all the child needs.
        at_fork_in_child(self._new_lock)

    def _new_lock(self) -> None:
        self._lock = threading.Lock()

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        """Append `spans` to the file as one line.

        Args:
            spans: The batch to write.

        Returns:
            `SUCCESS` once the line is written, `FAILURE` after shutdown or on any error.
        """
        if self._shutdown:
            _logger.warning("rfobs file exporter is shut down; dropping %d spans", len(spans))
            return SpanExportResult.FAILURE
        if not spans:
            return SpanExportResult.SUCCESS
        try:
            data = (encode_otlp_json(spans) + "\n").encode("utf-8")
        except Exception as exc:
            # Telemetry must never break the agent. The SDK encoder already drops bad attributes, so
            # this is a last resort; the exception text may quote attribute values, so log its type only.
            _logger.warning("rfobs could not encode %d spans (%s); dropping them", len(spans), type(exc).__name__)
            return SpanExportResult.FAILURE
        try:
            with self._lock:
                self._write(data)
        except OSError as exc:
            _logger.warning("rfobs could not write %d spans to %s: %s", len(spans), self.path, exc.strerror or exc)
            return SpanExportResult.FAILURE
        return SpanExportResult.SUCCESS

    def _write(self, data: bytes) -> None:
        try:
            size = self.path.stat().st_size
        except FileNotFoundError:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            size = 0
        if self.max_bytes and size and size + len(data) > self.max_bytes:
            self._rotate()
        # The file is reopened for every batch so that, after another process rotates it, this
        # process appends to the new file rather than to the renamed backup.
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
        finally:
            os.close(fd)

    def _rotate(self) -> None:
        if self.backup_count == 0:
            os.truncate(self.path, 0)
            return
        for index in range(self.backup_count - 1, 0, -1):
            source = self._backup(index)
            if source.exists():
                os.replace(source, self._backup(index + 1))
        os.replace(self.path, self._backup(1))

    def _backup(self, index: int) -> Path:
        return self.path.with_name(f"{self.path.name}.{index}")

    def shutdown(self) -> None:
        """Refuse further exports; every later `export` returns `FAILURE`."""
        self._shutdown = True

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        """Return True: every export has already reached the file.

        Args:
            timeout_millis: Unused; nothing is buffered.

        Returns:
            Always True.
        """
        return True
