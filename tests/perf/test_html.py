from __future__ import annotations

import importlib.util
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any, cast

import pytest
from matplotlib.axes import Axes
from matplotlib.patches import Rectangle

from rfobs import ConfigError
from rfobs.perf._html import chart_figures, render_html
from tests.e2e.browser import CHROMIUM_FLAGS, CHROMIUM_HINT

REPO_ROOT = Path(__file__).resolve().parents[2]
ARTIFACT = REPO_ROOT / "test-artifacts" / "perf-report.png"
LOAD_CHARTS = ("chart-latency", "chart-throughput", "chart-errors", "chart-resources")
SVG_NAMESPACES = {"http://www.w3.org/2000/svg", "http://www.w3.org/1999/xlink"}


def load_test_report() -> dict[str, Any]:
    series = [
        {"second": s, "requests": 1000 + 10 * s, "rps": 1000.0 + 10 * s, "p95_s": 0.010 + 0.001 * s, "errors": s % 3}
        for s in range(12)
    ]
    resources = [{"second": s / 2, "cpu_percent": 40.0 + s, "rss_bytes": 60 * 2**20 + s * 2**18} for s in range(24)]
    return {
        "kind": "load_test",
        "name": "checkout <agent> & co",
        "config": {"concurrent_users": 50, "total_requests": None, "duration": 12.0, "ramp_up": 2.0},
        "requests": 12_660,
        "errors": 11,
        "error_rate": 11 / 12_660,
        "errors_by_type": {"TimeoutError": 4, "<script>alert(1)</script>": 7},
        "timeouts": 4,
        "duration_s": 12.0,
        "throughput_rps": 1055.0,
        "latency_s": {"min": 0.001, "mean": 0.012, "p50": 0.011, "p90": 0.018, "p95": 0.02, "p99": 0.03, "max": 0.25},
        "series": series,
        "resources": resources,
    }


def benchmark_report() -> dict[str, Any]:
    return {
        "kind": "benchmark",
        "name": "tool_call",
        "iterations": 10_000,
        "ops_per_s": 250_000.0,
        "latency_s": {"mean": 4e-6, "stdev": 1e-6, "p50": 3.8e-6, "p90": 5e-6, "p95": 6e-6, "p99": 9e-6, "max": 4e-5},
        "errors": 0,
        "cpu_percent": 99.5,
        "rss_bytes": 80 * 2**20,
        "rounds": 5,
        "timer_overhead_s": 4.2e-8,
        "warmup": 100,
        "concurrency": 4,
    }


def chart_svg_count(page: str, chart_id: str) -> int:
    match = re.search(rf'<div class="chart" id="{chart_id}">(.*?)</div>', page, re.DOTALL)
    assert match is not None, chart_id
    return len(re.findall(r"<svg\b", match.group(1)))


def test_load_test_report_has_title_summary_and_one_inline_svg_per_chart() -> None:
    page = render_html(load_test_report())

    assert page.startswith("<!DOCTYPE html>\n")
    assert "<title>rfobs load test: checkout &lt;agent&gt; &amp; co</title>" in page
    assert re.findall(r"<h2>(.*?)</h2>", page) == [
        "Settings",
        "Errors by type",
        "Latency p95 per second",
        "Throughput per second",
        "Errors per second",
        "Process CPU and memory",
    ]
    assert [chart_svg_count(page, chart) for chart in LOAD_CHARTS] == [1, 1, 1, 1]
    assert '<tr><td>Requests</td><td class="num">12,660</td></tr>' in page
    assert '<tr><td>Latency p99</td><td class="num">30 ms</td></tr>' in page
    assert '<tr><td>Throughput</td><td class="num">1,055.0 req/s</td></tr>' in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<script" not in page


def test_report_references_nothing_outside_the_page() -> None:
    page = render_html(load_test_report())

    assert set(re.findall(r"https?://[^\"'\s)<>]+", page)) <= SVG_NAMESPACES
    assert re.findall(r"<(?:link|script|img|iframe)\b", page) == []
    assert "@import" not in page
    assert "url(http" not in page


def test_rendering_the_same_report_twice_gives_the_same_page() -> None:
    assert render_html(load_test_report()) == render_html(load_test_report())


def test_benchmark_report_has_a_latency_percentile_chart_only() -> None:
    page = render_html(benchmark_report())

    assert "<title>rfobs benchmark: tool_call</title>" in page
    assert re.findall(r'id="(chart-[a-z]+)"', page) == ["chart-latency"]
    assert chart_svg_count(page, "chart-latency") == 1
    assert '<tr><td>Latency mean</td><td class="num">4 µs</td></tr>' in page
    assert '<tr><td>RSS</td><td class="num">80.0 MiB</td></tr>' in page


def test_empty_series_still_draws_every_chart() -> None:
    report: dict[str, Any] = {**load_test_report(), "series": [], "resources": [], "errors_by_type": {}}

    page = render_html(report)

    assert [chart_svg_count(page, chart) for chart in LOAD_CHARTS] == [1, 1, 1, 1]
    assert "Errors by type" not in page


def test_unknown_kind_is_rejected_with_the_allowed_kinds() -> None:
    with pytest.raises(ConfigError, match=r"report\['kind'\] is 'soak'; allowed: 'benchmark', 'load_test'"):
        render_html({"kind": "soak"})


def test_missing_field_is_named() -> None:
    report = load_test_report()
    del report["series"]

    with pytest.raises(ConfigError, match=r"report has no 'series' field"):
        render_html(report)


def test_missing_matplotlib_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)

    with pytest.raises(ImportError, match=r"pip install 'rfobs\[perf\]'"):
        render_html(benchmark_report())


def chromium(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("chromium")
    if binary is None:
        pytest.fail(f"headless Chromium is needed to check the HTML report: {CHROMIUM_HINT}")
    command = [
        binary,
        *CHROMIUM_FLAGS,
        f"--user-data-dir={tmp_path / 'chromium-profile'}",
        *args,
    ]
    return subprocess.run(command, capture_output=True, text=True, timeout=60, check=True)


def test_report_renders_in_headless_chromium_with_every_chart(tmp_path: Path) -> None:
    page = tmp_path / "report.html"
    page.write_text(render_html(load_test_report()), encoding="utf-8")

    dom = chromium(tmp_path, "--dump-dom", page.as_uri()).stdout

    assert "<title>rfobs load test: checkout &lt;agent&gt; &amp; co</title>" in dom
    assert [chart_svg_count(dom, chart) for chart in LOAD_CHARTS] == [1, 1, 1, 1]
    # Each chart is drawn, not just an empty element: matplotlib emits one <path> per line, bar, tick and glyph.
    for chart in LOAD_CHARTS:
        match = re.search(rf'id="{chart}">(.*?)</div>', dom, re.DOTALL)
        assert match is not None
        assert len(re.findall(r"<path\b", match.group(1))) > 20, chart


def test_screenshot_of_the_report_shows_the_charts(tmp_path: Path) -> None:
    page = tmp_path / "report.html"
    page.write_text(render_html(load_test_report()), encoding="utf-8")
    ARTIFACT.parent.mkdir(parents=True, exist_ok=True)
    ARTIFACT.unlink(missing_ok=True)

    chromium(tmp_path, f"--screenshot={ARTIFACT}", "--window-size=1200,2000", page.as_uri())

    data = ARTIFACT.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(data) > 50_000  # a blank 1200x2000 page compresses to a few kilobytes
    if importlib.util.find_spec("PIL") is not None:
        from PIL import Image

        with Image.open(ARTIFACT) as image:
            assert image.size == (1200, 2000)
            counted = image.convert("RGB").getcolors(maxcolors=1_000_000)
            assert counted is not None
            colours = cast("list[tuple[int, tuple[int, int, int]]]", counted)
            # Text alone is greys; the chart lines add red, blue and green pixels.
            assert any(r > 150 and g < 80 and b < 80 for _, (r, g, b) in colours)
            assert any(b > 150 and r < 80 for _, (r, _g, b) in colours)
            assert any(g > 120 and r < 80 and b < 80 for _, (r, g, b) in colours)


def table_rows(page: str, table_id: str) -> list[tuple[str, str]]:
    match = re.search(rf'<table id="{table_id}">(.*?)</table>', page, re.DOTALL)
    assert match is not None, table_id
    return re.findall(r'<tr><td>(.*?)</td><td class="num">(.*?)</td></tr>', match.group(1))


def bars(axes: Axes) -> list[tuple[float, float, float]]:
    """Each bar's left edge, width and height."""
    return [(p.get_x(), p.get_width(), p.get_height()) for p in axes.patches if isinstance(p, Rectangle)]


def partial_run_report(series: list[dict[str, Any]], duration: float) -> dict[str, Any]:
    report = load_test_report()
    resources = [sample for sample in report["resources"] if sample["second"] <= duration]
    return {**report, "series": series, "duration_s": duration, "resources": resources}


def test_load_test_settings_are_plain_values_with_their_units() -> None:
    report = load_test_report()
    report["config"] = {**report["config"], "think_time": 0.0, "timeout": None, "name": "x", "sample_spans": 0.25,
                        "region": "eu", "dry_run": True}  # fmt: skip

    rows = table_rows(render_html(report), "settings")

    assert rows == [
        ("Virtual users", "50"),
        ("Total requests", "no limit (timed run)"),
        ("Duration limit", "12 s"),
        ("Ramp-up", "2 s"),
        ("Think time", "0 s"),
        ("Request timeout", "none"),
        ("Requests traced", "25%"),
        ("region", "eu"),
        ("dry_run", "yes"),
    ]
    assert not any(quote in value for _, value in rows for quote in ("'", "&#x27;", "None", "True"))


def test_benchmark_settings_show_rounds_warmup_concurrency_and_timer_overhead() -> None:
    assert table_rows(render_html(benchmark_report()), "settings") == [
        ("Iterations per round", "10,000"),
        ("Rounds", "5"),
        ("Warmup calls", "100"),
        ("Concurrency", "4"),
        ("Timer overhead (subtracted)", "42 ns"),
    ]
    old = {key: value for key, value in benchmark_report().items() if key not in ("warmup", "concurrency")}
    assert table_rows(render_html(old), "settings")[2:4] == [("Warmup calls", "not recorded"), ("Concurrency",
                                                             "not recorded")]  # fmt: skip


def test_a_partial_last_second_is_drawn_at_its_real_rate_and_width() -> None:
    series = [
        {"second": 0, "span_s": 1.0, "requests": 1000, "rps": 1000.0, "p95_s": 0.01, "errors": 0},
        {"second": 1, "span_s": 0.25, "requests": 240, "rps": 960.0, "p95_s": 0.01, "errors": 0},
    ]
    axes = chart_figures(partial_run_report(series, 1.25))["chart-throughput"].axes[0]

    assert bars(axes) == [(0.0, 1.0, 1000.0), (1.0, 0.25, 960.0)]
    assert axes.get_xlim() == (0.0, 1.25)


def test_a_report_without_bucket_spans_keeps_whole_seconds() -> None:
    series = [{"second": 0, "requests": 10, "rps": 10.0, "p95_s": 0.01, "errors": 1}]
    axes = chart_figures(partial_run_report(series, 1.0))["chart-errors"].axes[0]

    assert bars(axes) == [(0.0, 1.0, 1.0)]


def test_an_error_free_run_has_an_error_axis_starting_at_zero() -> None:
    report = load_test_report()
    report["series"] = [{**point, "errors": 0} for point in report["series"]]

    axes = chart_figures(report)["chart-errors"].axes[0]

    assert axes.get_ylim() == (0.0, 1.0)
    assert [text.get_text() for text in axes.texts] == ["no errors"]


def test_every_value_axis_starts_at_zero() -> None:
    figures = chart_figures(load_test_report())
    for chart in LOAD_CHARTS:
        for axes in figures[chart].axes:
            assert axes.get_ylim()[0] == 0.0, chart


def test_the_rss_line_has_headroom_below_the_frame() -> None:
    report = load_test_report()
    report["resources"] = [{"second": s / 2, "cpu_percent": 40.0, "rss_bytes": 64 * 2**20} for s in range(24)]

    cpu, memory = chart_figures(report)["chart-resources"].axes

    assert memory.get_ylim() == (0.0, 80.0)  # a flat 64 MiB line sits a fifth below the top edge
    assert cpu.get_ylim() == (0.0, 60.0)
    legend = cpu.get_legend()
    assert legend is not None
    assert [line.get_label() for line in legend.get_lines()] == ["CPU %", "RSS"]


def test_a_sub_second_run_spans_a_whole_second_on_every_time_axis() -> None:
    series = [{"second": 0, "span_s": 0.1, "requests": 200, "rps": 2000.0, "p95_s": 0.002, "errors": 0}]
    report = {**partial_run_report(series, 0.1), "resources": [{"second": 0.1, "cpu_percent": 0.0, "rss_bytes": 1}]}

    figures = chart_figures(report)

    assert [figures[chart].axes[0].get_xlim() for chart in LOAD_CHARTS] == [(0.0, 1.0)] * 4
    assert bars(figures["chart-throughput"].axes[0]) == [(0.0, 0.1, 2000.0)]


def test_benchmark_latency_is_a_log_scale_percentile_plot() -> None:
    axes = chart_figures(benchmark_report())["chart-latency"].axes[0]

    assert axes.get_yscale() == "log"
    assert [label.get_text() for label in axes.get_xticklabels()] == ["p50", "p90", "p95", "p99", "max"]
    line = axes.get_lines()[0]
    assert list(line.get_ydata()) == [3.8e-6, 5e-6, 6e-6, 9e-6, 4e-5]  # type: ignore[arg-type]
    low, high = axes.get_ylim()
    assert low < 3.8e-6 and high > 4e-5


def test_result_objects_render_like_their_dicts() -> None:
    from rfobs.perf._results import BenchmarkResult

    document = benchmark_report()
    result = BenchmarkResult.from_dict(document)
    assert render_html(result) == render_html(result.to_dict())


def test_screenshots_of_short_and_partial_runs(tmp_path: Path) -> None:
    series = [
        {"second": 0, "span_s": 1.0, "requests": 1000, "rps": 1000.0, "p95_s": 0.010, "errors": 0},
        {"second": 1, "span_s": 0.3, "requests": 290, "rps": 966.7, "p95_s": 0.011, "errors": 0},
    ]
    for name, report in (("partial", partial_run_report(series, 1.3)), ("benchmark", benchmark_report())):
        page = tmp_path / f"{name}.html"
        page.write_text(render_html(report), encoding="utf-8")
        shot = ARTIFACT.with_name(f"perf-report-{name}.png")
        shot.unlink(missing_ok=True)
        chromium(tmp_path, f"--screenshot={shot}", "--window-size=1400,2400", page.as_uri())
        assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
