import argparse
import copy
import json
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from rfobs._latency import Baseline
from rfobs.perf.cli import add_bench_commands


def _main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="rfobs")
    add_bench_commands(parser.add_subparsers())
    args = parser.parse_args(argv)
    return int(args.run(args))


def _write(path: Path, document: dict[str, Any]) -> str:
    path.write_text(json.dumps(document), encoding="utf-8")
    return str(path)


@pytest.fixture
def target_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    (tmp_path / "bench_target.py").write_text("def work():\n    return sum(range(10))\n", encoding="utf-8")
    monkeypatch.setattr(sys, "path", [str(tmp_path), *sys.path])
    yield "bench_target:work"
    sys.modules.pop("bench_target", None)


def test_run_writes_json_and_saves_a_health_baseline(target_module: str, tmp_path: Path) -> None:
    code = _main(
        ["bench", "run", target_module, "--iterations", "200", "--rounds", "2", "--json", "out.json",
         "--save-baseline", "baseline.json"]
    )  # fmt: skip
    assert code == 0
    document = json.loads((tmp_path / "out.json").read_text(encoding="utf-8"))
    assert document["kind"] == "benchmark"
    assert document["iterations"] == 200
    saved = Baseline.load(tmp_path / "baseline.json").snapshot()
    assert saved == {
        target_module: {"p50": document["latency_s"]["p50"], "p95": document["latency_s"]["p95"], "count": 200}
    }


def test_compare_exit_codes(tmp_path: Path) -> None:
    base: dict[str, Any] = {
        "kind": "load_test", "requests": 100, "errors": 0, "error_rate": 0.0, "throughput_rps": 100.0,
        "latency_s": {"mean": 0.01, "p95": 0.02, "p99": 0.03},
    }  # fmt: skip
    slower = copy.deepcopy(base)
    slower["latency_s"]["p95"] = 0.026
    a = _write(tmp_path / "a.json", base)
    assert _main(["bench", "compare", a, _write(tmp_path / "same.json", base)]) == 0
    assert _main(["bench", "compare", a, _write(tmp_path / "b.json", slower)]) == 1
    assert _main(["bench", "compare", a, str(tmp_path / "b.json"), "--threshold", "0.5"]) == 0


class _Ok(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


def test_load_url_prints_plain_progress_and_writes_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Ok)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{httpd.server_address[1]}/"
        assert _main(["bench", "load", url, "--users", "2", "--requests", "50", "--json", "load.json"]) == 0
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()
    document = json.loads((tmp_path / "load.json").read_text(encoding="utf-8"))
    assert (document["requests"], document["errors"], document["name"]) == (50, 0, url)
    assert capsys.readouterr().out.splitlines()[0] == f"load test {url}"


def test_load_requires_exactly_one_of_requests_and_duration() -> None:
    with pytest.raises(SystemExit) as caught:
        _main(["bench", "load", "http://127.0.0.1:1/", "--users", "1"])
    assert caught.value.code == 2


def _benchmark_document(name: str, ops: float) -> dict[str, Any]:
    latency = {"mean": 1e-6, "p95": 2e-6, "p99": 3e-6}
    return {"kind": "benchmark", "name": name, "iterations": 100, "errors": 0, "ops_per_s": ops, "latency_s": latency}


def test_compare_refuses_results_of_different_benchmarks(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a = _write(tmp_path / "a.json", _benchmark_document("mod:fast", 1e6))
    b = _write(tmp_path / "b.json", _benchmark_document("mod:slow", 10.0))

    assert _main(["bench", "compare", a, b]) == 2

    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == (
        f"rfobs bench compare: {a} and {b} are results of different benchmarks (name 'mod:fast' vs 'mod:slow'); "
        "pass --force to compare them anyway\n"
    )


def test_compare_refuses_a_benchmark_against_a_load_test(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    load = {"kind": "load_test", "name": "mod:fast", "requests": 10, "errors": 0, "error_rate": 0.0,
            "throughput_rps": 5.0, "latency_s": {"mean": 0.01, "p95": 0.02, "p99": 0.03}}  # fmt: skip
    a = _write(tmp_path / "a.json", _benchmark_document("mod:fast", 1e6))
    b = _write(tmp_path / "b.json", load)

    assert _main(["bench", "compare", a, b]) == 2
    assert "(kind 'benchmark' vs 'load_test')" in capsys.readouterr().err


def test_compare_force_compares_different_benchmarks_with_a_warning(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a = _write(tmp_path / "a.json", _benchmark_document("mod:fast", 1e6))
    b = _write(tmp_path / "b.json", _benchmark_document("mod:slow", 10.0))

    assert _main(["bench", "compare", a, b, "--force"]) == 1

    captured = capsys.readouterr()
    assert captured.err == (
        "rfobs bench compare: warning: comparing different benchmarks (name 'mod:fast' vs 'mod:slow')\n"
    )
    assert "throughput (/s)" in captured.out
    assert captured.out.splitlines()[-1] == "regression (threshold 10%)"


def _closed_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.mark.timeout(60)
def test_load_exits_1_when_every_request_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    url = f"http://127.0.0.1:{_closed_port()}/"

    assert _main(["bench", "load", url, "--users", "2", "--requests", "10"]) == 1

    assert capsys.readouterr().err.splitlines()[-1] == (
        "rfobs bench load: error rate 100.00% (10 of 10 requests) exceeds --max-error-rate 1.00%; "
        "main errors: ConnectionRefusedError: 10"
    )


class _Failing(_Ok):
    calls = 0

    def do_GET(self) -> None:
        _Failing.calls += 1
        self.send_response(503 if _Failing.calls % 10 else 500)
        self.send_header("Content-Length", "0")
        self.end_headers()


@pytest.mark.timeout(60)
def test_load_error_rate_gate_names_the_main_errors_and_honours_the_limit(
    capsys: pytest.CaptureFixture[str],
) -> None:
    _Failing.calls = 0
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Failing)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{httpd.server_address[1]}/"
        assert _main(["bench", "load", url, "--users", "1", "--requests", "20"]) == 1
        message = capsys.readouterr().err.splitlines()[-1]
        assert _main(["bench", "load", url, "--users", "1", "--requests", "20", "--max-error-rate", "1"]) == 0
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()
    assert message == (
        "rfobs bench load: error rate 100.00% (20 of 20 requests) exceeds --max-error-rate 1.00%; "
        "main errors: HTTP 503: 18, HTTP 500: 2"
    )


@pytest.mark.parametrize("value", ["1.5", "-0.1", "nan", "ten"])
def test_max_error_rate_must_be_a_fraction(value: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        _main(["bench", "load", "http://127.0.0.1:1/", "--users", "1", "--requests", "1", "--max-error-rate", value])
    assert caught.value.code == 2
    assert f"--max-error-rate: expected a fraction from 0 to 1 (0.01 is 1%), got {value!r}" in capsys.readouterr().err
