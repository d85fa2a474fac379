import asyncio
import math
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar

import pytest

from rfobs.exceptions import ConfigError
from rfobs.perf._loadtest import LoadTestConfig, load_test, load_test_async, load_test_sync
from rfobs.perf._results import LoadTestResult
from rfobs.testing import Capture


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    count = 0
    lock = threading.Lock()
    arrivals: ClassVar[list[float]] = []

    def do_GET(self) -> None:
        import time

        with _Handler.lock:
            _Handler.count += 1
            n = _Handler.count
            _Handler.arrivals.append(time.monotonic())
        status = 500 if n % 5 == 0 else 200
        body = b"ok"
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[str]:
    _Handler.count = 0
    _Handler.arrivals = []
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/"
    httpd.shutdown()
    httpd.server_close()
    thread.join()


def test_load_test_against_real_server_counts_exactly_and_every_fifth_fails(server: str) -> None:
    result = load_test_sync(server, LoadTestConfig(4, total_requests=500))
    assert result.requests == 500
    assert _Handler.count == 500
    assert result.errors == 100
    assert result.error_rate == 0.2
    assert result.errors_by_type == {"HTTP 500": 100}
    assert result.timeouts == 0
    assert sum(point["requests"] for point in result.series) == 500


def test_ramp_up_spreads_user_starts(server: str) -> None:
    import time

    begin = time.monotonic()
    result = load_test_sync(server, LoadTestConfig(4, duration=1.0, ramp_up=0.6, think_time=0.05))
    offsets = [arrival - begin for arrival in _Handler.arrivals]
    assert result.requests == _Handler.count
    # users start at 0, 0.15, 0.30 and 0.45 s, each sending a request every ~0.05 s: before 0.12 s only the
    # first user is running (at most 3 requests); between 0.5 and 0.62 s all four are (at least 2 each)
    assert 1 <= sum(1 for offset in offsets if offset < 0.12) <= 3
    assert sum(1 for offset in offsets if 0.5 <= offset < 0.62) >= 8


class _FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


async def test_percentiles_from_a_known_distribution_with_fake_clock() -> None:
    clock = _FakeClock()
    latencies = [(i % 1000 + 1) / 100_000 for i in range(10_000)]  # 10 µs .. 10 ms uniform, 10 of each
    position = iter(latencies)

    async def target() -> None:
        clock.now += next(position)

    result = await load_test(target, LoadTestConfig(1, total_requests=10_000), clock=clock)
    assert result.requests == 10_000
    # HDR with 3 significant digits: within 0.1% of the exact value
    for key, exact in (("p50", 0.005), ("p90", 0.009), ("p95", 0.0095), ("p99", 0.0099)):
        assert math.isclose(result.latency_s[key], exact, rel_tol=0.001)
    assert result.latency_s["min"] == pytest.approx(0.00001, rel=0.001)
    assert result.latency_s["max"] == pytest.approx(0.01, rel=0.001)
    assert result.duration_s == pytest.approx(sum(latencies))
    # 10 + 20 + ... + 4460 µs = 0.99 s: the 447th request ends past 1 s
    assert result.series[0]["requests"] == 446
    assert len(result.series) == 51
    assert sum(point["requests"] for point in result.series) == 10_000


async def test_timeouts_and_exceptions_are_counted_by_type() -> None:
    calls = [0]

    async def target() -> None:
        calls[0] += 1
        if calls[0] % 3 == 0:
            await asyncio.sleep(1)
        if calls[0] % 3 == 1:
            raise RuntimeError("boom")

    result = await load_test(target, LoadTestConfig(3, total_requests=9, timeout=0.05))
    assert result.requests == 9
    assert result.timeouts == 3
    assert result.errors_by_type == {"RuntimeError": 3, "TimeoutError": 3}
    assert result.errors == 6


def test_sync_function_runs_in_threads_and_result_round_trips() -> None:
    result = load_test_sync(lambda: None, LoadTestConfig(2, total_requests=20, name="sync"))
    document = result.to_dict()
    assert document["kind"] == "load_test"
    assert document["requests"] == 20
    assert LoadTestResult.from_dict(document).to_dict() == document
    assert result.text().splitlines()[0] == "load test sync"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"concurrent_users": 0, "total_requests": 1}, r"concurrent_users=0\): expected an integer >= 1"),
        ({"concurrent_users": 1, "duration": -1.0}, r"duration=-1.0\): expected a finite number of seconds > 0"),
        ({"concurrent_users": 1}, r"total_requests=None, duration=None\): expected exactly one"),
        ({"concurrent_users": 1, "total_requests": 5, "duration": 1.0}, "expected exactly one of them"),
        ({"concurrent_users": 1, "total_requests": 5, "ramp_up": math.inf}, r"ramp_up=inf\)"),
        ({"concurrent_users": 1, "total_requests": 5, "sample_spans": 2.0}, r"sample_spans=2.0\)"),
    ],
)
def test_bad_configs_raise_a_clear_value_error(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message) as caught:
        LoadTestConfig(**kwargs)  # type: ignore[arg-type]
    assert isinstance(caught.value, ConfigError)


async def test_sampled_requests_are_spans_and_the_run_is_metrics(capture: Capture) -> None:
    calls = [0]

    async def target() -> None:
        calls[0] += 1
        if calls[0] % 2 == 0:
            raise ValueError("bad")

    config = LoadTestConfig(1, total_requests=10, sample_spans=1.0, name="t")
    await load_test(target, config)
    spans = capture.spans()
    assert [span["name"] for span in spans] == ["load_test.request"] * 10
    assert [span["attributes"].get("error.type") for span in spans] == [None, "ValueError"] * 5
    points = capture.metric("researchflow_agents.load_test_requests")
    assert sorted((p["attributes"]["outcome"], p["value"]) for p in points) == [("error", 5), ("ok", 5)]
    durations = capture.metric("researchflow_agents.load_test_request_duration")
    assert [p["count"] for p in durations] == [10]


LOAD_TEST_KEYS = [
    "name", "concurrent_users", "total_requests", "successful_requests", "failed_requests", "timeouts",
    "error_rate", "duration", "throughput_rps", "avg_response_time", "min_response_time", "max_response_time",
    "p50_response_time", "p90_response_time", "p95_response_time", "p99_response_time", "requests_by_error_type",
]  # fmt: skip


async def _eighth_second_requests(**settings: object) -> LoadTestResult:
    """12 requests of exactly 0.125 s on a fake clock, every 4th raising: the run lasts 1.5 s."""
    clock = _FakeClock()
    calls = [0]

    async def target() -> None:
        calls[0] += 1
        clock.now += 0.125
        if calls[0] % 4 == 0:
            raise ValueError("bad")

    return await load_test(target, clock=clock, **settings)  # type: ignore[arg-type]


async def test_the_last_partial_second_is_rated_over_the_time_it_covered() -> None:
    result = await _eighth_second_requests(concurrent_users=1, total_requests=12)

    # Requests ending at 0.125 .. 0.875 s fall in second 0; those ending at 1.0 .. 1.5 s in second 1, which the
    # run covered for half a second: 5 requests there are 10 requests/s, not 5.
    assert [(p["second"], p["span_s"], p["requests"], p["rps"]) for p in result.series] == [
        (0, 1.0, 7, 7.0),
        (1, 0.5, 5, 10.0),
    ]
    assert result.duration_s == 1.5
    assert result.resources[-1]["second"] == 1.5  # the closing sample: a short run still shows its memory


async def test_the_result_reads_by_key_as_the_seeds_detailed_report() -> None:
    result = await _eighth_second_requests(concurrent_users=1, total_requests=12, name="api")

    assert list(result.keys()) == LOAD_TEST_KEYS
    assert {key: result[key] for key in LOAD_TEST_KEYS if not key.endswith("_response_time")} == {
        "name": "api",
        "concurrent_users": 1,
        "total_requests": 12,
        "successful_requests": 9,
        "failed_requests": 3,
        "timeouts": 0,
        "error_rate": 0.25,
        "duration": 1.5,
        "throughput_rps": 8.0,
        "requests_by_error_type": {"ValueError": 3},
    }
    for key in ("avg", "min", "max", "p50", "p90", "p95", "p99"):
        assert result[f"{key}_response_time"] == pytest.approx(0.125, rel=0.001), key
    assert result.throughput_rps == result["throughput_rps"]
    with pytest.raises(KeyError, match="LoadTestResult has no figure 'rps'; allowed: name, concurrent_users, "):
        result["rps"]


async def test_seed_calls_run_as_written_with_a_config_or_keywords() -> None:
    from rfobs import LoadTestConfig as SeedConfig
    from rfobs import benchmark, load_test

    calls = [0]

    async def api_call() -> int:
        calls[0] += 1
        return 200

    load_result = await load_test(api_call, concurrent_users=50, total_requests=1000)
    assert (load_result["total_requests"], load_result["failed_requests"], calls[0]) == (1000, 0, 1000)
    assert load_result["throughput_rps"] > 0
    config = SeedConfig(concurrent_users=5, total_requests=20, ramp_up_duration=0.05)
    assert config.ramp_up == 0.05
    load_result = await load_test(api_call, config)
    assert load_result["total_requests"] == 20
    result = await benchmark(api_call, iterations=100, warmup=0, rounds=1)
    assert result.operations_per_second > 0


def test_load_test_is_the_coroutine_and_load_test_async_its_old_name() -> None:
    import inspect

    assert inspect.iscoroutinefunction(load_test)
    assert load_test_async is load_test
    assert asyncio.run(load_test(lambda: None, concurrent_users=1, total_requests=3))["total_requests"] == 3


@pytest.mark.parametrize(
    ("config", "settings", "message"),
    [
        (LoadTestConfig(1, total_requests=1), {"total_requests": 2}, r"load_test\(config=..., total_requests=2\): "
         "expected a LoadTestConfig or keyword settings, not both"),
        (None, {"concurrent_users": 1, "total_request": 5}, r"load_test\(total_request=...\): unknown option; "
         r"did you mean total_requests=\?"),
        (None, {"total_requests": 5}, r"load_test\(\): expected a LoadTestConfig or keyword settings with "
         r"concurrent_users=, got \{'total_requests': 5\}"),
        (None, {}, r"load_test\(\): expected a LoadTestConfig or keyword settings with concurrent_users="),
    ],
)  # fmt: skip
def test_bad_settings_fail_before_the_run(
    config: LoadTestConfig | None, settings: dict[str, object], message: str
) -> None:
    calls = [0]

    def target() -> None:
        calls[0] += 1

    with pytest.raises(ConfigError, match=message):
        load_test_sync(target, config, **settings)  # type: ignore[arg-type]
    assert calls[0] == 0


def test_ramp_up_and_its_seed_alias_cannot_disagree() -> None:
    with pytest.raises(ConfigError, match=r"LoadTestConfig\(ramp_up=1.0, ramp_up_duration=2.0\): expected one"):
        LoadTestConfig(1, total_requests=1, ramp_up=1.0, ramp_up_duration=2.0)
    with pytest.raises(ConfigError, match=r"LoadTestConfig\(ramp_up_duration=-1.0\): expected a finite number"):
        LoadTestConfig(1, total_requests=1, ramp_up_duration=-1.0)


def test_a_cpu_share_over_a_too_short_interval_is_not_reported_as_measured() -> None:
    from rfobs.perf._loadtest import _resource_sample  # pyright: ignore[reportPrivateUsage]

    class Process:
        def __init__(self) -> None:
            self.cpu = [40.0, 422.0]  # psutil's share since the previous call: huge over a few microseconds

        def cpu_percent(self, interval: None) -> float:
            return self.cpu.pop(0)

        def memory_info(self) -> Any:
            return type("Memory", (), {"rss": 1024})()

    process, now = Process(), [10.5]
    samples: list[dict[str, Any]] = []
    samples.append(_resource_sample(process, lambda: now[0], 10.0, samples))
    now[0] = 10.50001
    samples.append(_resource_sample(process, lambda: now[0], 10.0, samples))
    assert [s["cpu_percent"] for s in samples] == [40.0, 40.0]
    assert process.cpu == []  # the short interval's figure was read (and so reset) but not reported
