"""Span bursts at default settings (#9): encoder cost per span, a 100,000-span burst, and where sustained loss starts.

Run: .venv/bin/python benchmarks/bench_burst.py [--otlp] [--spans 100000] [--rates 2000,4000,8000,16000] [--seconds 5]

(a) Encoder cost: µs per span of a typical rfobs span (10 attributes, a parent) in 512-span batches, best of
    several rounds: the SDK's protobuf objects through protobuf's JSON mapping (the file exporter before #9)
    against rfobs's direct OTLP/JSON, and the SDK's `encode_spans(...).SerializeToString()` against
    rfobs's `encode_trace_request`.
(b) Burst: `rfobs.init()` on the file exporter (and with `--otlp`, OTLP/gRPC to a receiver in this process),
    then `--spans` calls of an `@rfobs.task` function from one thread at full speed, then
    `telemetry.shutdown(timeout=120)`. "sdk" rows swap the SDK's encoder back in, for comparison.
(c) Sustained rates: the same, paced at each of `--rates` spans/s for `--seconds` seconds.
Each (b) and (c) run is a fresh process: `rfobs.init()` can run once per process. Queue settings are the defaults.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2_grpc import (
    TraceServiceServicer,
    add_TraceServiceServicer_to_server,  # pyright: ignore[reportUnknownVariableType]
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the reference encoder lives with the tests

from tests.otlp_samples import sdk_otlp_json

BATCH = 512


def typical_spans(count: int = BATCH) -> list[ReadableSpan]:
    """LLM-call spans as rfobs records them, with ten attributes, under an agent task span."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider(
        resource=Resource(
            {
                "service.name": "researcher",
                "service.version": "1.2.3",
                "deployment.environment.name": "production",
                "telemetry.sdk.language": "python",
                "telemetry.sdk.name": "opentelemetry",
                "telemetry.sdk.version": "1.45.2",
            }
        )
    )
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("rfobs", "0.3.0")
    with tracer.start_as_current_span("researcher.answer"):
        for index in range(count):
            with tracer.start_as_current_span(
                "chat gpt-4o",
                kind=SpanKind.CLIENT,
                attributes={
                    "gen_ai.operation.name": "chat",
                    "gen_ai.provider.name": "openai",
                    "openinference.span.kind": "LLM",
                    "gen_ai.request.model": "gpt-4o",
                    "gen_ai.response.model": "gpt-4o-2024-08-06",
                    "gen_ai.response.id": f"chatcmpl-{index:08d}",
                    "gen_ai.usage.input_tokens": 1200 + index,
                    "gen_ai.usage.output_tokens": 300,
                    "gen_ai.request.temperature": 0.2,
                    "gen_ai.response.finish_reasons": ("stop",),
                },
            ):
                pass
    return [span for span in exporter.get_finished_spans() if span.parent is not None][:count]


def per_span_us(encode: Callable[[], object], spans: int, seconds: float = 1.0) -> float:
    """Best-of-rounds time of `encode()` over `spans` spans, in µs per span."""
    encode()
    best = float("inf")
    deadline = time.perf_counter() + seconds
    rounds = 0
    while rounds < 5 or time.perf_counter() < deadline:
        start = time.perf_counter()
        encode()
        best = min(best, time.perf_counter() - start)
        rounds += 1
    return best / spans * 1e6


def encoder_costs() -> None:
    from rfobs._otlp_json import encode_otlp_json
    from rfobs._otlp_proto import encode_trace_request

    spans = typical_spans()
    assert json.loads(encode_otlp_json(spans)) == json.loads(sdk_otlp_json(spans))
    assert ExportTraceServiceRequest.FromString(encode_trace_request(spans)) == encode_spans(spans)
    old_json = per_span_us(lambda: sdk_otlp_json(spans), len(spans))
    new_json = per_span_us(lambda: encode_otlp_json(spans), len(spans))
    old_proto = per_span_us(lambda: encode_spans(spans).SerializeToString(), len(spans))
    new_proto = per_span_us(lambda: encode_trace_request(spans), len(spans))
    print(f"(a) Encoder cost, µs per span ({len(spans)}-span batches of a 10-attribute span, best of rounds)")
    print(f"{'encoding':<10} {'SDK path':>10} {'rfobs':>10} {'speed-up':>9}")
    print(f"{'OTLP/JSON':<10} {old_json:>10.1f} {new_json:>10.1f} {old_json / new_json:>8.1f}x")
    print(f"{'protobuf':<10} {old_proto:>10.1f} {new_proto:>10.1f} {old_proto / new_proto:>8.1f}x")
    print()


class _CountingReceiver(TraceServiceServicer):
    def __init__(self) -> None:
        self.spans = 0
        self._lock = threading.Lock()

    def Export(self, request: ExportTraceServiceRequest, context: object) -> ExportTraceServiceResponse:
        count = sum(len(scope.spans) for resource in request.resource_spans for scope in resource.scope_spans)
        with self._lock:
            self.spans += count
        return ExportTraceServiceResponse()


def start_receiver() -> tuple[grpc.Server, _CountingReceiver, int]:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4), options=[("grpc.max_receive_message_length", -1)])
    receiver = _CountingReceiver()
    add_TraceServiceServicer_to_server(receiver, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    return server, receiver, port


def child(config: dict[str, Any]) -> None:
    """One measurement in this (fresh) process; prints its result as one JSON line."""
    import rfobs

    directory = Path(tempfile.mkdtemp(prefix="rfobs-burst-"))
    overrides: dict[str, Any] = {
        "metrics__prometheus_enabled": False,
        "health__enabled": False,
        "logging__enabled": False,
        "tracing__file_path": str(directory / "traces.jsonl"),
        "tracing__file_max_bytes": 2**40,  # no rotation: every written span stays countable
    }
    if config["exporter"] == "otlp":
        overrides |= {"otlp__endpoint": f"http://127.0.0.1:{config['port']}", "otlp__protocol": "grpc"}
    else:
        overrides["tracing__exporter"] = "file"
    _use_encoders(config["encoder"])
    telemetry = rfobs.init(**overrides)

    @rfobs.task("researcher", "step")
    def step(index: int) -> int:
        return index

    spans, rate = config["spans"], config["rate"]
    start = time.perf_counter()
    if rate:
        interval = 1.0 / rate
        for index in range(spans):
            ahead = start + index * interval - time.perf_counter()
            if ahead > 0.001:
                time.sleep(ahead)
            step(index)
    else:
        for index in range(spans):
            step(index)
    produced = time.perf_counter() - start
    start = time.perf_counter()
    telemetry.shutdown(timeout=120)
    shutdown = time.perf_counter() - start
    written = _spans_in(directory) if config["exporter"] == "file" else None
    result = {"produced_per_s": spans / produced, "shutdown_s": shutdown, "written": written}
    print(json.dumps(result | {"dropped": telemetry.drops.get("spans")}))


def _use_encoders(encoder: str) -> None:
    """Pin the encoders of a run: "sdk" is the file exporter's JSON before #9 and the SDK's OTLP/gRPC exporter.

    Only the classes `rfobs.exporters` imports when it builds the exporter are swapped, so the run keeps
    whatever else the pipeline does (wrappers, settings), whichever of the two `rfobs.exporters` builds.
    """
    import opentelemetry.exporter.otlp.proto.grpc.trace_exporter as sdk_grpc

    import rfobs._file_exporter
    import rfobs._otlp_exporters

    if encoder == "sdk":
        rfobs._file_exporter.encode_otlp_json = sdk_otlp_json
        rfobs._otlp_exporters.GrpcSpanExporter = sdk_grpc.OTLPSpanExporter
    else:
        sdk_grpc.OTLPSpanExporter = rfobs._otlp_exporters.GrpcSpanExporter


def _spans_in(directory: Path) -> int:
    count = 0
    for path in directory.iterdir():
        with path.open(encoding="utf-8") as lines:
            for line in lines:
                body = json.loads(line)
                for resource in body.get("resourceSpans", ()):
                    for scope in resource.get("scopeSpans", ()):
                        count += len(scope.get("spans", ()))
    return count


def run(config: dict[str, Any], receiver: _CountingReceiver | None) -> dict[str, Any]:
    before = receiver.spans if receiver else 0
    output = subprocess.run(
        [sys.executable, __file__, "--child", json.dumps(config)],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    if output.returncode != 0:
        raise RuntimeError(f"child failed ({output.returncode}):\n{output.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(output.stdout.strip().splitlines()[-1])
    if config["exporter"] == "otlp" and receiver is not None:
        result["written"] = receiver.spans - before
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--spans", type=int, default=100_000, help="spans in the burst (b)")
    parser.add_argument("--rates", default="2000,4000,8000,16000", help="spans/s for (c), comma-separated")
    parser.add_argument("--seconds", type=float, default=5.0, help="seconds per rate in (c)")
    parser.add_argument("--otlp", action="store_true", help="also export over OTLP/gRPC to an in-process receiver")
    parser.add_argument("--only", choices=("encode", "burst", "rates"), help="run one part")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(json.loads(args.child))
        return
    if args.only in (None, "encode"):
        encoder_costs()
    server, receiver, port = start_receiver() if args.otlp else (None, None, 0)
    try:
        exporters = ["file", "otlp"] if args.otlp else ["file"]
        cases = [(exporter, encoder) for exporter in exporters for encoder in ("sdk", "rfobs")]
        if args.only in (None, "burst"):
            print(f"(b) Burst: {args.spans:,} @rfobs.task spans from one thread at full speed, then shutdown(120)")
            _header("")
            for exporter, encoder in cases:
                config = {"exporter": exporter, "encoder": encoder, "spans": args.spans, "rate": 0, "port": port}
                _row("", exporter, encoder, args.spans, run(config, receiver))
            print()
        if args.only in (None, "rates"):
            print(f"(c) Sustained rate: paced for {args.seconds:g} s per rate, then shutdown(120)")
            _header(f"{'rate/s':>8} ")
            for rate in (int(text) for text in args.rates.split(",")):
                spans = int(rate * args.seconds)
                for exporter, encoder in cases:
                    config = {"exporter": exporter, "encoder": encoder, "spans": spans, "rate": rate, "port": port}
                    _row(f"{rate:>8} ", exporter, encoder, spans, run(config, receiver))
    finally:
        if server is not None:
            server.stop(None)


def _header(prefix: str) -> None:
    columns = f"{'exporter':<8} {'encoder':<7} {'made/s':>8} {'written':>9} {'dropped':>8} {'lost':>6} {'shutdown':>9}"
    print(prefix + columns)


def _row(prefix: str, exporter: str, encoder: str, spans: int, result: dict[str, Any]) -> None:
    written = result["written"]
    lost = (spans - written) / spans
    print(
        f"{prefix}{exporter:<8} {encoder:<7} {result['produced_per_s']:>8,.0f} {written:>9,} {result['dropped']:>8,} "
        f"{lost:>6.1%} {result['shutdown_s']:>8.2f}s",
        flush=True,
    )


if __name__ == "__main__":
    main()
