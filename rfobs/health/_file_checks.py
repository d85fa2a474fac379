"""Health checks over files: required keys of `.env` files (and their permissions), and log rotation."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

from rfobs import _check
from rfobs._secrets import is_secret_key, scrub_text
from rfobs.health import _check_base as b
from rfobs.health._model import CheckResult, Status, Value

__all__ = ["EnvFileCheck", "LogRotationCheck"]

# -- environment files --------------------------------------------------------------------------------------------

_ENV_ASSIGNMENT = re.compile(r"\s*(?:export\s+)?(?P<key>[A-Za-z_][A-Za-z0-9_.-]*)\s*=(?P<value>.*)")
_INLINE_COMMENT = re.compile(r"\s+#.*$")


def _parse_env(text: str) -> tuple[dict[str, bool], list[int]]:
    """Which keys a `.env` text assigns and whether each value is non-empty; plus malformed line numbers.

    Only emptiness is kept: the values themselves never leave this function.
    """
    keys: dict[str, bool] = {}
    malformed: list[int] = []
    lines = text.splitlines()
    number = 0
    while number < len(lines):
        line = lines[number]
        number += 1
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        match = _ENV_ASSIGNMENT.fullmatch(line)
        if match is None:
            malformed.append(number)
            continue
        raw = match.group("value").strip()
        quote = raw[:1]
        if quote in ("'", '"'):
            body = raw[1:]
            # A quoted value may span lines (dotenv's multi-line values): read on to the closing quote.
            while not re.search(rf"(?<!\\){quote}", body) and number < len(lines):
                body += "\n" + lines[number]
                number += 1
            closing = re.search(rf"(?<!\\){quote}", body)
            value = body[: closing.start()] if closing else body
        else:
            # `#` starts a comment only after whitespace (`KEY= # note` is empty, `KEY=#1` is not).
            value = _INLINE_COMMENT.sub("", match.group("value"))
        keys[match.group("key")] = bool(value.strip())
    return keys, malformed


class EnvFileCheck(b.BaseCheck):
    """Required keys present and non-empty in `.env`-style files, and secret-holding files not world-readable.

    Files are read in order and later assignments win, as when they are loaded one after the other. Understands
    `KEY=VALUE`, `export KEY=VALUE`, single or double quotes (also over several lines) and `#` comments. Unhealthy
    when a file is missing or unreadable, a required key is missing or empty, or a file holding a secret-looking key
    (`API_KEY`, `DB_PASSWORD`, ...) is readable by every user; degraded when a line cannot be parsed. Messages name
    files, keys and line numbers, never values.

    Args:
        paths: The files.
        required_keys: Keys that must be present with a non-empty value.
        name: The check's name.
        critical: Whether failing makes the whole report unhealthy.
    """

    def __init__(
        self,
        paths: Sequence[b.PathArg],
        required_keys: Sequence[str] = (),
        *,
        name: str = "env_files",
        critical: bool = False,
    ) -> None:
        super().__init__(name, critical)
        self.paths = b.paths("EnvFileCheck", "paths", paths)
        self.required_keys = b.strings("EnvFileCheck", "required_keys", required_keys)

    async def run(self) -> CheckResult:
        """Read the files and judge."""
        started = time.perf_counter()
        return await asyncio.to_thread(self._check, started)

    def _check(self, started: float) -> CheckResult:
        keys: dict[str, bool] = {}
        unhealthy: list[str] = []
        degraded: list[str] = []
        for path in self.paths:
            try:
                mode = os.stat(path).st_mode
                text = Path(path).read_text(encoding="utf-8", errors="replace")
            except FileNotFoundError:
                unhealthy.append(f"missing file: {path}")
                continue
            except OSError as error:
                unhealthy.append(f"cannot read {path}: {scrub_text(error.strerror or type(error).__name__)}")
                continue
            found, malformed = _parse_env(text)
            keys.update(found)
            secrets = sorted(key for key in found if is_secret_key(key))
            if secrets and mode & 0o004 and os.name != "nt":
                unhealthy.append(f"{path} holds secrets ({b.names(secrets)}) and is world-readable: chmod 600 it")
            if malformed:
                lines = b.names([str(n) for n in malformed])
                degraded.append(f"{path}: unparsable line{'s' if len(malformed) > 1 else ''} {lines}")
        missing = [key for key in self.required_keys if key not in keys]
        empty = [key for key in self.required_keys if keys.get(key) is False]
        if missing:
            unhealthy.append(f"missing keys: {b.names(missing)}")
        if empty:
            unhealthy.append(f"empty keys: {b.names(empty)}")
        values: dict[str, Value] = {
            "files": len(self.paths),
            "keys": len(keys),
            "missing_keys": len(missing),
            "empty_keys": len(empty),
        }
        if unhealthy or degraded:
            status = Status.UNHEALTHY if unhealthy else Status.DEGRADED
            return self._result(status, "; ".join(unhealthy + degraded), values, started)
        message = f"{len(self.required_keys)} required keys set in {len(self.paths)} file(s)"
        if not self.required_keys:
            message = f"{len(keys)} keys in {len(self.paths)} file(s), none required"
        return self._result(Status.HEALTHY, message, values, started)


# -- log rotation -------------------------------------------------------------------------------------------------

# `x.log.1`, `x.log.2.gz`, `x.log-20240101`, `x.log.2024-01-01_12-00-00` (logrotate, logging.handlers).
_ROTATED = re.compile(r"(?P<base>.+?)[.-]\d[\d_.-]*?(?:\.(?:gz|bz2|xz|zst|lz4|zip|Z))?")


class LogRotationCheck(b.BaseCheck):
    """Whether logs are rotated; live files too big or too old, or too many rotated copies of one log, degrade.

    Live files over `max_bytes` or unmodified for `max_age_seconds`, and more than `max_rotated` rotated copies
    (`x.log.1`, `x.log.2.gz`, `x.log-20240101`) of one log, are named in the message.

    A path may be a log file (it and its rotated copies beside it are checked) or a directory (every file in it,
    not recursing). A missing path degrades too: it usually means a wrong setting. Messages name files by basename.

    Args:
        paths: Log files or directories.
        max_bytes: Largest healthy live log file.
        max_age_seconds: Longest a live log file may go unmodified (it was not rotated, or nothing writes it).
        max_rotated: Most rotated copies of one log that are healthy.
        name: The check's name.
        critical: Whether failing makes the whole report unhealthy.
    """

    def __init__(
        self,
        paths: Sequence[b.PathArg],
        *,
        max_bytes: int = 100 * 2**20,
        max_age_seconds: float = 30 * 86400,
        max_rotated: int = 10,
        name: str = "log_rotation",
        critical: bool = False,
    ) -> None:
        super().__init__(name, critical)
        owner = "LogRotationCheck"
        self.paths = b.paths(owner, "paths", paths)
        self.max_bytes = _check.integer(owner, "max_bytes", max_bytes, ge=1)
        self.max_age_seconds = _check.number(owner, "max_age_seconds", max_age_seconds, gt=0, finite=False)
        self.max_rotated = _check.integer(owner, "max_rotated", max_rotated, ge=0)

    async def run(self) -> CheckResult:
        """Scan the logs and judge."""
        started = time.perf_counter()
        return await asyncio.to_thread(self._check, started)

    def _check(self, started: float) -> CheckResult:
        now = time.time()
        live: dict[str, os.stat_result] = {}
        rotated: dict[str, list[str]] = {}
        missing: list[str] = []
        for path in self.paths:
            if os.path.isdir(path):
                entries = [(e.name, e.path) for e in os.scandir(path) if e.is_file()]
                only = None
            elif os.path.isfile(path):
                folder = os.path.dirname(path) or "."
                entries = [(e.name, e.path) for e in os.scandir(folder) if e.is_file()]
                only = os.path.basename(path)
            else:
                missing.append(os.path.basename(path.rstrip("/\\")) or path)
                continue
            names = {name for name, _ in entries}
            for name, full in entries:
                base = _rotated_base(name, names)
                if base is not None and (only is None or base == only):
                    rotated.setdefault(base, []).append(name)
                elif base is None and (only is None or name == only):
                    with contextlib.suppress(FileNotFoundError):  # rotated away since the listing
                        live[name] = os.stat(full)
        oversized = sorted(n for n, s in live.items() if s.st_size > self.max_bytes)
        stale = sorted(n for n, s in live.items() if now - s.st_mtime > self.max_age_seconds)
        crowded = sorted(base for base, copies in rotated.items() if len(copies) > self.max_rotated)
        problems: list[str] = []
        if oversized:
            problems.append(f"over {b.size(self.max_bytes)}: {b.names(oversized)}")
        if stale:
            problems.append(f"not rotated for over {b.age(self.max_age_seconds)}: {b.names(stale)}")
        if crowded:
            counts = [f"{base} ({len(rotated[base])})" for base in crowded]
            problems.append(f"more than {self.max_rotated} rotated files: {b.names(counts)}")
        if missing:
            problems.append(f"missing: {b.names(missing)}")
        values: dict[str, Value] = {
            "files": len(live),
            "rotated_files": sum(len(copies) for copies in rotated.values()),
            "largest_bytes": max((s.st_size for s in live.values()), default=0),
            "oversized": len(oversized),
            "stale": len(stale),
        }
        if problems:
            return self._result(Status.DEGRADED, "; ".join(problems), values, started)
        largest = max((s.st_size for s in live.values()), default=0)
        message = f"{len(live)} log file(s), {values['rotated_files']} rotated, largest {b.size(largest)}"
        return self._result(Status.HEALTHY, message, values, started)


def _rotated_base(name: str, names: Iterable[str]) -> str | None:
    """The log `name` is a rotated copy of, or None; the base must exist beside it or end in `.log`."""
    match = _ROTATED.fullmatch(name)
    if match is None:
        return None
    base = match.group("base")
    return base if base.endswith(".log") or base in names else None
