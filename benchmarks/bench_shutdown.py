"""Shutdown time with 2,000 spans pending and the collector down: rfobs against raw OpenTelemetry.

Run: .venv/bin/python benchmarks/bench_shutdown.py
Each case runs in a fresh process against a loopback port that refuses connections, or that accepts them and
never answers. Raw OpenTelemetry is a TracerProvider with the SDK's BatchSpanProcessor and the same OTLP
exporter (10 s timeout, the default); rfobs is rfobs.init() with shutdown(timeout=2).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading

SPANS = 2000
RAW = """
import sys, time
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
endpoint, protocol = sys.argv[1], sys.argv[2]
if protocol == "grpc":
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
    exporter = OTLPSpanExporter(endpoint=endpoint, insecure=True, timeout=10)
else:
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    exporter = OTLPSpanExporter(endpoint=endpoint + "/v1/traces", timeout=10)
provider = TracerProvider()
provider.add_span_processor(BatchSpanProcessor(exporter))
tracer = provider.get_tracer("bench")
for _ in range(SPANS):
    with tracer.start_as_current_span("work"):
        pass
t = time.monotonic()
provider.shutdown()
print(time.monotonic() - t, -1)
""".replace("SPANS", str(SPANS))
RFOBS = """
import sys, time
import rfobs
endpoint, protocol = sys.argv[1], sys.argv[2]
handle = rfobs.init(otlp__endpoint=endpoint, otlp__protocol=protocol, tracing__max_queue_size=4096,
                    metrics__prometheus_port=0, logging__enabled=False)
for _ in range(SPANS):
    with handle.tracer.start_as_current_span("work"):
        pass
t = time.monotonic()
handle.shutdown(timeout=2)
print(time.monotonic() - t, handle.drops.get("spans"))
""".replace("SPANS", str(SPANS))


def refused() -> tuple[str, socket.socket | None]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{probe.getsockname()[1]}", None


def hanging() -> tuple[str, socket.socket]:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(128)
    held: list[socket.socket] = []

    def accept() -> None:
        while True:
            try:
                held.append(server.accept()[0])
            except OSError:
                return

    threading.Thread(target=accept, daemon=True).start()
    return f"http://127.0.0.1:{server.getsockname()[1]}", server


def measure(code: str, endpoint: str, protocol: str) -> tuple[float, int]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RFOBS_", "OTEL_"))}
    out = subprocess.run(
        [sys.executable, "-c", code, endpoint, protocol],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
        check=True,
    )
    seconds, dropped = out.stdout.split()
    return float(seconds), int(dropped)


def main() -> None:
    print(f"shutdown with {SPANS} spans pending (s); rfobs: shutdown(timeout=2)")
    header = f"  {'collector':<10} {'protocol':<14} {'raw OTel':>9} {'rfobs':>7} {'ratio':>7}"
    print(f"{header}  rfobs spans counted as dropped")
    for name, make in (("refusing", refused), ("hanging", hanging)):
        for protocol in ("grpc", "http/protobuf"):
            endpoint, server = make()
            try:
                raw, _ = measure(RAW, endpoint, protocol)
                ours, dropped = measure(RFOBS, endpoint, protocol)
            finally:
                if server is not None:
                    server.close()
            print(f"  {name:<10} {protocol:<14} {raw:9.2f} {ours:7.2f} {raw / ours:6.1f}x  {dropped}")


if __name__ == "__main__":
    main()
