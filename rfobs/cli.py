"""The `rfobs` command: `demo`, `traces`, `config show`, `config validate`, `health` and `health baseline save`."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, cast

if TYPE_CHECKING:
    from rfobs.health import HealthChecker, HealthReport
    from rfobs.health.baseline import Baseline

__all__ = ["health_table", "main"]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the `rfobs` command line; returns the exit status.

    Output piped into a reader that stops early (`rfobs config show --json | head -1`) ends the command
    quietly with status 1, as the Python documentation recommends, instead of a BrokenPipeError traceback.
    """
    try:
        parser = _parser()
        args = parser.parse_args(argv)
        if not hasattr(args, "run"):
            parser.print_help()
            return 2
        status = int(args.run(args))
        sys.stdout.flush()  # here, so a closed pipe is noticed inside the handler below, not at exit
    except BrokenPipeError:
        # Python flushes stdout again at exit; point it at devnull so that flush has nowhere to fail.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
        return 1
    return status


def _parser() -> argparse.ArgumentParser:
    from rfobs._version import __version__

    parser = argparse.ArgumentParser(prog="rfobs", description="Observability for Python AI agents.")
    parser.add_argument("--version", action="version", version=f"rfobs {__version__}")
    commands = parser.add_subparsers(metavar="COMMAND")

    demo = commands.add_parser("demo", help="run an instrumented research-agent workload")
    demo.add_argument("--duration", type=_positive_float, default=10.0, help="seconds to run (default 10)")
    demo.add_argument("--concurrency", type=_positive_int, default=3, help="agents working at once (default 3)")
    demo.add_argument("--seed", type=int, default=None, help="random seed, for a repeatable run")
    demo.add_argument("--env", default=None, help="settings environment (default: RFOBS_ENV or development)")
    demo.add_argument(
        "--redis", metavar="URL", default=None, help="share the rate limit and circuit breaker through this Redis"
    )
    demo.set_defaults(run=_demo)

    traces = commands.add_parser("traces", help="show the local trace file as span trees")
    traces.add_argument("--file", default=None, help="trace file (default: tracing.file_path setting)")
    traces.add_argument("--trace-id", default=None, help="show one trace (8 or more leading hex digits)")
    traces.add_argument("--last", type=_positive_int, default=5, help="newest N traces (default 5)")
    traces.add_argument("--errors", action="store_true", help="only traces with an error")
    traces.add_argument("--width", type=_positive_int, default=None, help="line width (default: terminal)")
    traces.set_defaults(run=_traces)

    config = commands.add_parser("config", help="show or validate the settings")
    config_commands = config.add_subparsers(metavar="ACTION", required=True)
    show = config_commands.add_parser("show", help="effective settings and where each came from (secrets hidden)")
    show.add_argument("--env", default=None)
    show.add_argument("--json", action="store_true", help="machine-readable output")
    show.set_defaults(run=_config_show)
    validate = config_commands.add_parser("validate", help="exit 0 if the settings are valid, 1 listing problems")
    validate.add_argument("--env", default=None)
    validate.set_defaults(run=_config_validate)

    health = commands.add_parser(
        "health",
        help="run the health checks: exit 0 healthy, 1 unhealthy, 2 degraded under --strict",
        description="Run the health checks the settings describe, print a table (or JSON) and exit 0 when "
        "healthy, 1 when unhealthy (a critical check failed; with --check, any selected check failed), "
        "2 when degraded under --strict (0 without). Usable as a Docker HEALTHCHECK or Kubernetes exec probe.",
    )
    health.add_argument("--env", default=None, help="settings environment (default: RFOBS_ENV or development)")
    health.add_argument("--json", action="store_true", help="print the report as JSON")
    health.add_argument("--strict", action="store_true", help="exit 2 when degraded (default: 0)")
    health.add_argument("--check", action="append", metavar="NAME", help="run only this check (repeatable)")
    health.set_defaults(run=_health)
    health_commands = health.add_subparsers(metavar="ACTION")
    baseline = health_commands.add_parser("baseline", help="latency baselines for degradation detection")
    baseline_commands = baseline.add_subparsers(metavar="ACTION", required=True)
    save = baseline_commands.add_parser(
        "save",
        help="save recorded latencies as the baseline (health.baseline_path)",
        description="Save a latency baseline (p50/p95 per operation) to health.baseline_path. A command-line "
        "process has recorded no timings of its own, so they come from the agent's trace file (--from-traces, "
        "the default: every span's duration, by span name) or from a JSON file (--from: an object mapping each "
        'operation to a list of durations in seconds, e.g. {"researcher.plan": [0.21, 0.25]}, or a saved '
        "baseline).",
    )
    source = save.add_mutually_exclusive_group()
    source.add_argument("--from", dest="timings", metavar="FILE.json", help="recorded timings, or a baseline file")
    source.add_argument(
        "--from-traces",
        dest="traces",
        nargs="?",
        const="",
        metavar="FILE",
        help="span durations from a trace file (FILE default: tracing.file_path); used when --from is not given",
    )
    save.add_argument("--env", default=None, help="settings environment (default: RFOBS_ENV or development)")
    save.set_defaults(run=_health_baseline_save)
    from rfobs.perf.cli import add_bench_commands  # argparse only: the perf machinery loads when a command runs

    add_bench_commands(commands)
    return parser


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return value


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of at least 1, got {text!r}")
    return value


def _config_show(args: argparse.Namespace) -> int:
    from rfobs.config import describe_settings, load_config, settings_as_json
    from rfobs.exceptions import ConfigError

    try:
        settings = load_config(args.env)
    except ConfigError as error:
        print(error, file=sys.stderr)
        return 1
    out = sys.stdout
    if args.json:
        json.dump(settings_as_json(settings), out, indent=2)
        out.write("\n")
        return 0
    rows = describe_settings(settings)
    key_width = max(len(k) for k, _, _ in rows)
    value_width = min(40, max(len(v) for _, v, _ in rows))
    for key, value, source in rows:
        out.write(f"{key:<{key_width}}  {value:<{value_width}}  {source}\n")
    return 0


def _config_validate(args: argparse.Namespace) -> int:
    from rfobs._settings_env import SEED_ALIASES, honoured_aliases, ignored_aliases
    from rfobs.config import load_config
    from rfobs.exceptions import ConfigError

    try:
        settings = load_config(args.env)
    except ConfigError as error:
        print(error, file=sys.stderr)
        return 1
    print(f"settings are valid (environment: {settings.env})")
    for variable, key, preferred in honoured_aliases(settings):
        print(f"note: {variable} is honoured as {key}; prefer {preferred}")
    for variable, shown, allowed in ignored_aliases():
        print(
            f"note: {variable}={shown} is ignored: rfobs reads it as {SEED_ALIASES[variable]} only when it is {allowed}"
        )
    return 0


def _health(args: argparse.Namespace) -> int:
    import asyncio

    from rfobs.config import load_config
    from rfobs.exceptions import ConfigError
    from rfobs.health import Status
    from rfobs.health.server import report_dict
    from rfobs.health.setup import build_health_checker, discover

    try:
        settings = load_config(args.env)
        # A fresh process has timed nothing: the performance check reads the agent's recent spans instead.
        checker = build_health_checker(settings, recent_from_traces=True)
    except ConfigError as error:
        print(error, file=sys.stderr)
        return 1
    names: list[str] = args.check or []
    known = [check.name for check in checker.checks]
    if unknown := [name for name in names if name not in known]:
        print(f"rfobs health: no check named {unknown[0]!r}; the checks are: {', '.join(known)}", file=sys.stderr)
        return 1
    report = asyncio.run(_run_checks(checker, names))
    if args.json:
        json.dump(report_dict(report), sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        sys.stdout.write(health_table(report))
        if not names and (missing := discover(settings.health).missing):
            sys.stdout.write("".join(f"not checked: {line}\n" for line in missing))
    if report.status is Status.UNHEALTHY:
        return 1
    return 2 if report.status is Status.DEGRADED and args.strict else 0


async def _run_checks(checker: HealthChecker, names: Sequence[str]) -> HealthReport:
    """All checks (overall status as the endpoints judge it), or the named ones judged by the worst of them."""
    import asyncio
    import time

    from rfobs.health import HealthReport, Status

    if not names:
        return await checker.check_all()
    started = time.perf_counter()
    results = tuple(await asyncio.gather(*(checker.check(name) for name in names)))
    statuses = {result.status for result in results}
    worst = next((s for s in (Status.UNHEALTHY, Status.DEGRADED) if s in statuses), Status.HEALTHY)
    return HealthReport(worst, results, time.perf_counter() - started)


def health_table(report: HealthReport) -> str:
    """`report` as the fixed-width, colourless table `rfobs health` prints (one line per check, then a summary)."""
    from rfobs._secrets import scrub_text

    rows = [("CHECK", "STATUS", "CRITICAL", "DURATION", "MESSAGE")]
    for result in report.checks:
        message = scrub_text(" ".join(result.message.split()))
        critical = "yes" if result.critical else "no"
        rows.append((scrub_text(result.name), result.status.value, critical, f"{result.duration:.3f}s", message))
    widths = [max(len(row[column]) for row in rows) for column in range(4)]
    w0, w1, w2, w3 = widths
    lines = [
        f"{name:<{w0}}  {status:<{w1}}  {critical:<{w2}}  {duration:>{w3}}  {message}".rstrip()
        for name, status, critical, duration, message in rows
    ]
    count = len(report.checks)
    ready = "yes" if report.ready else "no"
    lines.append(
        f"overall: {report.status.value} (ready: {ready}; {count} check{'s' if count != 1 else ''} "
        f"in {report.duration:.3f}s)"
    )
    return "\n".join(lines) + "\n"


def _health_baseline_save(args: argparse.Namespace) -> int:
    from rfobs.config import load_config
    from rfobs.exceptions import ConfigError
    from rfobs.health.baseline import Baseline

    try:
        settings = load_config(args.env)
    except ConfigError as error:
        print(error, file=sys.stderr)
        return 1
    try:
        if args.timings is None:
            from rfobs.traceview import load_spans

            source = args.traces or settings.tracing.file_path
            baseline = Baseline()
            baseline.record_spans(load_spans(source))
        else:
            source = args.timings
            baseline = _read_timings(source)
    except (OSError, ValueError) as error:
        print(f"rfobs health baseline save: {error}", file=sys.stderr)
        return 1
    snapshot = baseline.snapshot()
    if not snapshot:
        print(f"rfobs health baseline save: no timings in {source}", file=sys.stderr)
        return 1
    path = settings.health.baseline_path
    try:
        baseline.save(path)
    except OSError as error:
        print(f"rfobs health baseline save: cannot write {path} ({error.strerror or error})", file=sys.stderr)
        return 1
    width = max(len("OPERATION"), *(len(operation) for operation in snapshot))
    print(f"{'OPERATION':<{width}}  {'COUNT':>7}  {'P50':>9}  {'P95':>9}")
    for operation, figures in snapshot.items():
        p50, p95 = f"{figures['p50']:.4f}s", f"{figures['p95']:.4f}s"
        print(f"{operation:<{width}}  {figures['count']:>7}  {p50:>9}  {p95:>9}")
    print(f"saved the baseline of {len(snapshot)} operations to {path}")
    return 0


def _read_timings(source: str) -> Baseline:
    """A `Baseline` from `{operation: [seconds, ...]}` or a saved baseline file; ValueError says what is wrong."""
    import math

    from rfobs.health.baseline import Baseline

    allowed = 'an object mapping operation names to lists of seconds, e.g. {"researcher.plan": [0.21, 0.25]}'
    with open(source, encoding="utf-8") as file:
        try:
            data: object = json.load(file)
        except ValueError as error:
            raise ValueError(f"{source} is not JSON ({error})") from None
    if isinstance(data, dict) and "operations" in data:
        return Baseline.load(source)
    if not isinstance(data, dict):
        raise ValueError(f"{source}: expected {allowed}")
    timings = cast("dict[str, object]", data)
    longest = max((len(cast("list[object]", v)) for v in timings.values() if isinstance(v, list)), default=0)
    baseline = Baseline(max(1000, longest))  # keep every timing given
    for operation, durations in timings.items():
        values = cast("list[object]", durations) if isinstance(durations, list) else []
        if not values or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v >= 0 for v in values
        ):
            raise ValueError(f"{source}: {operation!r} is not a list of durations; expected {allowed}")
        for value in values:
            baseline.record(operation, float(cast(float, value)))
    return baseline


def _traces(args: argparse.Namespace) -> int:
    from rfobs.traceview import build_traces, read_trace_file, render_loaded, select_traces

    path: str | None = args.file
    named_by = "--file"
    if path is None:
        from rfobs.config import load_config
        from rfobs.exceptions import ConfigError

        try:
            settings = load_config()
        except ConfigError as error:
            print(error, file=sys.stderr)
            return 1
        path = settings.tracing.file_path
        named_by = f"the tracing.file_path setting, from {settings.sources.get('tracing.file_path', 'default')}"
    width = args.width or shutil.get_terminal_size((100, 24)).columns
    try:
        loaded = read_trace_file(path)
    except OSError as error:
        print(f"rfobs traces: cannot read {path} ({error.strerror or error})", file=sys.stderr)
        return 1
    if not loaded.files:
        print(f"rfobs traces: {path} does not exist (named by {named_by})", file=sys.stderr)
        return 1
    try:
        text = render_loaded(loaded, path, trace_id=args.trace_id, last=args.last, errors_only=args.errors, width=width)
        # Like grep: asking for one trace that is not there is a failure a script can test.
        missing = args.trace_id is not None and not select_traces(build_traces(loaded.spans), trace_id=args.trace_id)
    except ValueError as error:
        print(f"rfobs traces: {error}", file=sys.stderr)
        return 2
    if missing:
        print(f"rfobs traces: {text}", file=sys.stderr)
        return 1
    print(text)
    return 0


def _demo(args: argparse.Namespace) -> int:
    from rfobs.demo import run_command

    return run_command(args.duration, concurrency=args.concurrency, seed=args.seed, env=args.env, redis=args.redis)


if __name__ == "__main__":
    sys.exit(main())
