"""The `rfobs` command: `demo`, `traces`, `config show` and `config validate`."""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sys
from collections.abc import Sequence

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the `rfobs` command line; returns the exit status."""
    parser = _parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "run"):
        parser.print_help()
        return 2
    return int(args.run(args))


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rfobs", description="Observability for Python AI agents.")
    commands = parser.add_subparsers(metavar="COMMAND")

    demo = commands.add_parser("demo", help="run an instrumented research-agent workload")
    demo.add_argument("--duration", type=_positive_float, default=10.0, help="seconds to run (default 10)")
    demo.add_argument("--concurrency", type=_positive_int, default=3, help="agents working at once (default 3)")
    demo.add_argument("--seed", type=int, default=None, help="random seed, for a repeatable run")
    demo.add_argument("--env", default=None, help="settings environment (default: RFOBS_ENV or development)")
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
    from rfobs.config import describe_settings, load_config
    from rfobs.exceptions import ConfigError

    try:
        rows = describe_settings(load_config(args.env))
    except ConfigError as error:
        print(error, file=sys.stderr)
        return 1
    out = sys.stdout
    if args.json:
        json.dump([{"key": k, "value": v, "source": s} for k, v, s in rows], out, indent=2)
        out.write("\n")
        return 0
    key_width = max(len(k) for k, _, _ in rows)
    value_width = min(40, max(len(v) for _, v, _ in rows))
    for key, value, source in rows:
        out.write(f"{key:<{key_width}}  {value:<{value_width}}  {source}\n")
    return 0


def _config_validate(args: argparse.Namespace) -> int:
    from rfobs.config import load_config
    from rfobs.exceptions import ConfigError

    try:
        settings = load_config(args.env)
    except ConfigError as error:
        print(error, file=sys.stderr)
        return 1
    print(f"settings are valid (environment: {settings.env})")
    return 0


def _traces(args: argparse.Namespace) -> int:
    from rfobs.traceview import render_file

    path = args.file
    if path is None:
        from rfobs.config import load_config
        from rfobs.exceptions import ConfigError

        try:
            path = load_config().tracing.file_path
        except ConfigError as error:
            print(error, file=sys.stderr)
            return 1
    width = args.width or shutil.get_terminal_size((100, 24)).columns
    try:
        print(render_file(path, trace_id=args.trace_id, last=args.last, errors_only=args.errors, width=width))
    except ValueError as error:
        print(f"rfobs traces: {error}", file=sys.stderr)
        return 2
    return 0


def _demo(args: argparse.Namespace) -> int:
    import asyncio

    import rfobs
    from rfobs.demo import DemoStats, run_demo
    from rfobs.exceptions import ConfigError

    try:
        telemetry = rfobs.init(args.env, service={"name": "research-agent-demo"}, logging={"enabled": False})
    except ConfigError as error:
        print(error, file=sys.stderr)
        return 1
    settings = telemetry.settings
    # Breaker transitions and the like are in the traces and metrics; keep them out of the progress display.
    logging.getLogger("rfobs").addHandler(logging.NullHandler())
    interactive = sys.stdout.isatty()
    print(f"rfobs demo: {args.concurrency} research agents for {args.duration:g}s (environment: {settings.env})")
    if telemetry.metrics_url:
        print(f"  metrics:  {telemetry.metrics_url} (while the demo runs)")
    traces_to = os.path.abspath(telemetry.trace_file) if telemetry.trace_file else settings.otlp.endpoint
    print(f"  traces:   {traces_to} ({settings.trace_exporter})")

    def summary(stats: DemoStats) -> str:
        return (
            f"  questions {stats.questions} ({stats.failed_questions} failed)   "
            f"api calls {stats.api_calls} ({stats.failed_api_calls} failed)   "
            f"llm tokens {stats.tokens}   breaker {stats.breaker}"
        )

    def progress(stats: DemoStats) -> None:
        if interactive:
            print(f"\r{summary(stats)}\x1b[K", end="", flush=True)

    stats = asyncio.run(run_demo(args.duration, concurrency=args.concurrency, seed=args.seed, on_progress=progress))
    print() if interactive else print(summary(stats))
    delivered = telemetry.shutdown()
    print("done." if delivered else "done, but some telemetry could not be delivered before the shutdown deadline.")
    print("Where to look:")
    if telemetry.trace_file:
        print("  rfobs traces --last 3        span trees of the newest traces")
        print("  rfobs traces --errors        only traces with a failure")
    else:
        print(f"  your OTLP backend at {settings.otlp.endpoint} (service research-agent-demo)")
    if telemetry.metrics_url:
        print(f"  {telemetry.metrics_url} is served by your agent while it runs (rfobs.init())")
    return 0


if __name__ == "__main__":
    sys.exit(main())
