"""The `rfobs bench` commands: `run` (benchmark), `load` (load test) and `compare` (regression gate)."""

from __future__ import annotations

import argparse
import importlib
import json
import math
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

__all__ = ["add_bench_commands"]


def add_bench_commands(subparsers: Any) -> None:
    """Add `bench run`, `bench load` and `bench compare` to the `rfobs` command's subparsers.

    Args:
        subparsers: What `ArgumentParser.add_subparsers()` returned.
    """
    bench = subparsers.add_parser("bench", help="benchmark, load-test and compare results")
    actions = bench.add_subparsers(metavar="ACTION", required=True)

    run = actions.add_parser("run", help="benchmark a function given as module:function")
    run.add_argument("target", metavar="module:function")
    run.add_argument("--iterations", type=_positive_int, default=1000, help="calls per round (default 1000)")
    run.add_argument("--warmup", type=int, default=100, help="untimed calls first (default 100)")
    run.add_argument("--concurrency", type=_positive_int, default=1, help="calls in flight (default 1)")
    run.add_argument("--rounds", type=_positive_int, default=5, help="timed rounds (default 5)")
    run.add_argument("--save-baseline", metavar="FILE", help="also save p50/p95 as the health baseline file")
    _outputs(run)
    run.set_defaults(run=_run)

    load = actions.add_parser("load", help="load-test a URL (http://...) or module:function")
    load.add_argument("target", metavar="URL|module:function")
    load.add_argument("--users", type=_positive_int, required=True, help="concurrent virtual users")
    length = load.add_mutually_exclusive_group(required=True)
    length.add_argument("--requests", type=_positive_int, help="total requests")
    length.add_argument("--duration", type=float, help="seconds to run")
    load.add_argument("--ramp-up", type=float, default=0.0, help="seconds over which users start (default 0)")
    load.add_argument("--think-time", type=float, default=0.0, help="seconds between a user's requests")
    load.add_argument("--timeout", type=float, default=None, help="per-request timeout in seconds")
    load.add_argument(
        "--max-error-rate",
        type=_fraction,
        default=0.01,
        metavar="FRACTION",
        help="exit 1 when more than this fraction of requests fail (0 to 1, default 0.01)",
    )
    _outputs(load)
    load.set_defaults(run=_load)

    comparing = actions.add_parser("compare", help="exit 1 when b.json regressed against a.json")
    comparing.add_argument("baseline", metavar="a.json")
    comparing.add_argument("current", metavar="b.json")
    comparing.add_argument("--threshold", type=float, default=0.1, help="allowed relative worsening (default 0.1)")
    comparing.add_argument(
        "--force", action="store_true", help="compare results of different benchmarks (names or kinds) anyway"
    )
    comparing.set_defaults(run=_compare)


def _outputs(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", metavar="FILE", help="write the result as JSON")
    parser.add_argument("--html", metavar="FILE", help="write a self-contained HTML report")


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of at least 1, got {text!r}")
    return value


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0 <= value <= 1:  # also refuses nan
        raise argparse.ArgumentTypeError(f"expected a fraction from 0 to 1 (0.01 is 1%), got {text!r}")
    return value


def _resolve(target: str) -> Callable[[], Any]:
    module_name, _, attribute = target.partition(":")
    if not module_name or not attribute:
        raise SystemExit(f"rfobs bench: expected module:function, got {target!r}")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    found: Any = importlib.import_module(module_name)
    for part in attribute.split("."):
        found = getattr(found, part)
    return found


def _run(args: argparse.Namespace) -> int:
    from rfobs.perf._benchmark import benchmark_sync
    from rfobs.perf._results import save_as_baseline

    result = benchmark_sync(
        _resolve(args.target), args.iterations, args.warmup, args.concurrency, rounds=args.rounds, name=args.target
    )
    print(result.text())
    if args.save_baseline:
        save_as_baseline(result, args.save_baseline)
        print(f"baseline saved to {args.save_baseline}")
    return _write(result.to_dict(), args)


def _load(args: argparse.Namespace) -> int:
    from rfobs.perf._loadtest import LoadTestConfig, load_test_sync

    config = LoadTestConfig(
        args.users,
        total_requests=args.requests,
        duration=args.duration,
        ramp_up=args.ramp_up,
        think_time=args.think_time,
        timeout=args.timeout,
        name=args.target,
    )
    target: Any = args.target if args.target.startswith("http://") else _resolve(args.target)
    display = _Display(sys.stderr)
    result = load_test_sync(target, config, progress=display.update)
    display.finish()
    print(result.text())
    code = _write(result.to_dict(), args)
    if result.error_rate > args.max_error_rate:
        ranked = sorted(result.errors_by_type.items(), key=lambda item: (-item[1], item[0]))
        main = ", ".join(f"{name}: {n:,}" for name, n in ranked[:3])
        print(
            f"rfobs bench load: error rate {result.error_rate:.2%} ({result.errors:,} of {result.requests:,} "
            f"requests) exceeds --max-error-rate {args.max_error_rate:.2%}; main errors: {main}",
            file=sys.stderr,
        )
        return code or 1
    return code


def _write(document: dict[str, Any], args: argparse.Namespace) -> int:
    if args.json:
        Path(args.json).write_text(json.dumps(document, indent=1) + "\n", encoding="utf-8")
    if args.html:
        try:
            from rfobs.perf._html import render_html
        except ImportError as error:
            print(f"rfobs bench: cannot write --html: {error} (pip install 'rfobs[perf]')", file=sys.stderr)
            return 2
        Path(args.html).write_text(render_html(document), encoding="utf-8")
    return 0


def _compare(args: argparse.Namespace) -> int:
    from rfobs.perf._compare import compare, mismatches

    documents = [json.loads(Path(name).read_text(encoding="utf-8")) for name in (args.baseline, args.current)]
    reasons = "; ".join(mismatches(documents[0], documents[1]))
    if reasons and not args.force:
        print(
            f"rfobs bench compare: {args.baseline} and {args.current} are results of different benchmarks "
            f"({reasons}); pass --force to compare them anyway",
            file=sys.stderr,
        )
        return 2
    if reasons:
        print(f"rfobs bench compare: warning: comparing different benchmarks ({reasons})", file=sys.stderr)
    comparison = compare(documents[0], documents[1], args.threshold, force=args.force)
    print(comparison.text())
    return 1 if comparison.regressed else 0


class _Display:
    """Live progress: a redrawn bar on a terminal, one plain line per update otherwise."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.tty = stream.isatty()

    def update(self, progress: Any) -> None:
        """Show one `Progress` snapshot."""
        filled = int(progress.fraction * 30)
        figures = (
            f"{progress.requests:,} req  {progress.rps:,.0f} rps  p95 {progress.p95_s * 1e3:.2f} ms  "
            f"{progress.errors} errors"
        )
        if self.tty:
            self.stream.write(f"\r[{'#' * filled}{'.' * (30 - filled)}] {progress.fraction:4.0%}  {figures}")
        else:
            self.stream.write(f"{progress.elapsed_s:6.1f}s {progress.fraction:4.0%}  {figures}\n")
        self.stream.flush()

    def finish(self) -> None:
        """End the progress display."""
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()
