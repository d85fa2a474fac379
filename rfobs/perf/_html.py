"""Self-contained HTML reports for load-test and benchmark results, with charts inlined as SVG.

The page loads nothing: no CDN, no script, no web font. Charts are drawn with matplotlib (the `perf` extra) on a
`Figure` of its own (never pyplot's global state, so rendering is safe from any thread) and inlined as `<svg>`
with text drawn as paths, so they look the same in any browser and with any installed fonts.
"""

from __future__ import annotations

import html
import io
import re
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any, Protocol, cast

from rfobs.exceptions import ConfigError
from rfobs.perf._results import BenchmarkResult, LoadTestResult

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["render_html"]


class _Axes(Protocol):
    """The part of matplotlib's `Axes` the charts use, typed fully (matplotlib's own hints leave `**kwargs` unknown)."""

    transAxes: Any
    xaxis: Any
    yaxis: Any

    def grid(self, visible: bool, *, alpha: float) -> object: ...
    def text(self, x: float, y: float, s: str, **kwargs: Any) -> object: ...
    def annotate(self, text: str, xy: tuple[float, float], **kwargs: Any) -> object: ...
    def plot(self, *args: Any, **kwargs: Any) -> list[Any]: ...
    def axhline(self, y: float, **kwargs: Any) -> object: ...
    def bar(self, x: Any, height: Any, **kwargs: Any) -> Any: ...
    def set_xlabel(self, xlabel: str) -> object: ...
    def set_ylabel(self, ylabel: str, **kwargs: Any) -> object: ...
    def set_xlim(self, left: float, right: float) -> object: ...
    def set_ylim(self, bottom: float, top: float | None = None) -> object: ...
    def set_yscale(self, value: str) -> object: ...
    def set_xticks(self, ticks: Sequence[float], labels: Sequence[str]) -> object: ...
    def legend(self, *args: Any, **kwargs: Any) -> object: ...
    def twinx(self) -> _Axes: ...


_Chart = tuple[str, str, Callable[["_Axes"], None]]  # id, title, the function drawing it on empty axes
_KINDS = ("benchmark", "load_test")
_PERCENTILES = ("min", "mean", "p50", "p90", "p95", "p99", "max")
_CSS = """
body { font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 1100px; color: #1d2430; }
h1 { font-size: 1.6rem; margin-bottom: 0.2rem; }
h2 { font-size: 1.2rem; margin-top: 2rem; border-bottom: 1px solid #d0d7de; padding-bottom: 0.3rem; }
table { border-collapse: collapse; margin: 0.5rem 0; }
th, td { border: 1px solid #d0d7de; padding: 0.25rem 0.75rem; text-align: left; }
th { background: #f6f8fa; font-weight: 600; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
.chart svg { width: 100%; height: auto; }
.subtitle { color: #57606a; margin-top: 0; }
.tables { display: flex; flex-wrap: wrap; gap: 0 2.5rem; align-items: flex-start; }
.tables h2 { margin-top: 0.5rem; }
"""
# matplotlib writes an XML prolog and a DOCTYPE pointing at w3.org before the <svg> element: inline HTML wants
# the element alone, and the DOCTYPE is the only external reference it would otherwise carry.
_SVG_START = re.compile(r"<svg\b")


def render_html(report: Mapping[str, Any]) -> str:
    """Render a load-test or benchmark result as one self-contained HTML page.

    Args:
        report: A result dict as returned by `to_dict()`, with `kind` `"load_test"` or `"benchmark"`, or the
            `BenchmarkResult` or `LoadTestResult` itself.

    Returns:
        The HTML document. It references no external resource; charts are inline `<svg>` elements inside
        containers with ids `chart-latency`, `chart-throughput`, `chart-errors` and `chart-resources` (a
        benchmark has only `chart-latency`).

    Raises:
        ConfigError: `report` has no known `kind` or lacks a field the report needs.
        ImportError: matplotlib is not installed (`pip install 'rfobs[perf]'`).
    """
    report = _document(report)
    tables, charts = _body(report)
    kind = "load test" if report["kind"] == "load_test" else "benchmark"
    title = f"rfobs {kind}: {_field(report, 'name')}"
    body = tables + "".join(_chart(chart_id, heading, _figure(draw)) for chart_id, heading, draw in charts)
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{html.escape(title)}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n"
        f"<h1>{html.escape(title)}</h1>\n{body}</body>\n</html>\n"
    )


def _load_matplotlib() -> None:
    try:
        import matplotlib
    except ImportError as exc:
        raise ImportError("the HTML report draws its charts with matplotlib: pip install 'rfobs[perf]'") from exc
    # Only the Agg backend, never a GUI one: reports are rendered on servers and in CI.
    matplotlib.use("Agg")


def _field(report: Mapping[str, Any], key: str) -> Any:
    if key not in report:
        raise ConfigError(f"report has no {key!r} field; pass the dict returned by the result's to_dict()")
    return report[key]


def _load_test_body(report: Mapping[str, Any]) -> tuple[str, list[_Chart]]:
    latency: Mapping[str, float] = _field(report, "latency_s")
    series = [_Bucket.of(point) for point in cast("Sequence[Mapping[str, Any]]", _field(report, "series"))]
    resources: Sequence[Mapping[str, Any]] = _field(report, "resources")
    duration = float(_field(report, "duration_s"))
    rows = [
        ("Requests", f"{int(_field(report, 'requests')):,}"),
        ("Errors", f"{int(_field(report, 'errors')):,}"),
        ("Error rate", f"{float(_field(report, 'error_rate')) * 100:.2f} %"),
        ("Timeouts", f"{int(_field(report, 'timeouts')):,}"),
        ("Duration", f"{duration:.2f} s"),
        ("Throughput", f"{float(_field(report, 'throughput_rps')):,.1f} req/s"),
    ]
    rows += [(f"Latency {key}", _fmt_seconds(latency[key])) for key in _PERCENTILES if key in latency]
    config: Mapping[str, Any] = report.get("config") or {}
    errors_by_type: Mapping[str, int] = report.get("errors_by_type") or {}
    # The three tables sit side by side so the charts start in the first screenful.
    parts = [
        '<p class="subtitle">Load test summary</p>\n<div class="tables">\n<section>\n',
        _table("summary", ("Measure", "Value"), rows),
        "</section>\n",
    ]
    if config:
        parts.append("<section>\n<h2>Settings</h2>\n")
        parts.append(_table("settings", ("Setting", "Value"), _load_test_settings(config)))
        parts.append("</section>\n")
    if errors_by_type:
        parts.append("<section>\n<h2>Errors by type</h2>\n")
        parts.append(
            _table("errors-by-type", ("Exception", "Count"), [(k, f"{v:,}") for k, v in errors_by_type.items()])
        )
        parts.append("</section>\n")
    parts.append("</div>\n")
    # Every chart shares one time axis: the whole run, and at least a second so a short run is not a sliver.
    end = max([duration, 1.0, *(b.end for b in series), *(float(r["second"]) for r in resources)])
    charts: list[_Chart] = [
        ("chart-latency", "Latency p95 per second", partial(_plot_latency, series=series, overall=latency, end=end)),
        ("chart-throughput", "Throughput per second", partial(_plot_throughput, series=series, end=end)),
        ("chart-errors", "Errors per second", partial(_plot_errors, series=series, end=end)),
        ("chart-resources", "Process CPU and memory", partial(_plot_resources, resources=resources, end=end)),
    ]
    return "".join(parts), charts


def _benchmark_body(report: Mapping[str, Any]) -> tuple[str, list[_Chart]]:
    latency: Mapping[str, float] = _field(report, "latency_s")
    rows = [
        ("Iterations", f"{int(_field(report, 'iterations')):,}"),
        ("Operations/s", f"{float(_field(report, 'ops_per_s')):,.1f}"),
        ("Errors", f"{int(_field(report, 'errors')):,}"),
        ("CPU", f"{float(_field(report, 'cpu_percent')):.1f} %"),
        ("RSS", f"{int(_field(report, 'rss_bytes')) / 2**20:,.1f} MiB"),
    ]
    rows += [(f"Latency {key}", _fmt_seconds(latency[key])) for key in ("stdev", *_PERCENTILES) if key in latency]
    tables = (
        '<p class="subtitle">Benchmark summary</p>\n<div class="tables">\n<section>\n'
        + _table("summary", ("Measure", "Value"), rows)
        + "</section>\n<section>\n<h2>Settings</h2>\n"
        + _table("settings", ("Setting", "Value"), _benchmark_settings(report))
        + "</section>\n</div>\n"
    )
    return tables, [("chart-latency", "Latency percentiles per call", partial(_plot_percentiles, latency=latency))]


def chart_figures(report: Mapping[str, Any]) -> dict[str, Figure]:
    """The report's charts as matplotlib figures, by chart id: what `render_html` inlines, for inspection.

    Raises:
        ConfigError: As `render_html`.
        ImportError: As `render_html`.
    """
    _, charts = _body(_document(report))
    return {chart_id: _figure(draw) for chart_id, _, draw in charts}


def _document(report: Mapping[str, Any]) -> Mapping[str, Any]:
    # A result object is a Mapping too, but over the seed's report keys; the page reads the `to_dict()` form.
    return report.to_dict() if isinstance(report, BenchmarkResult | LoadTestResult) else report


def _body(report: Mapping[str, Any]) -> tuple[str, list[_Chart]]:
    kind = report.get("kind")
    if kind not in _KINDS:
        raise ConfigError(f"report['kind'] is {kind!r}; allowed: {', '.join(repr(k) for k in _KINDS)}")
    _load_matplotlib()
    return _load_test_body(report) if kind == "load_test" else _benchmark_body(report)


def _plain(value: object) -> str:
    """A setting as a person writes it: no quotes, no `None`, no `True`."""
    if value is None:
        return "not set"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _seconds_setting(value: object, unset: str) -> str:
    return unset if value is None else f"{_plain(value)} s"


def _load_test_settings(config: Mapping[str, Any]) -> list[tuple[str, str]]:
    known: dict[str, tuple[str, Callable[[Any], str]]] = {
        "concurrent_users": ("Virtual users", _plain),
        "total_requests": ("Total requests", lambda v: _plain(v) if v is not None else "no limit (timed run)"),
        "duration": ("Duration limit", lambda v: _seconds_setting(v, "none (counted run)")),
        "ramp_up": ("Ramp-up", lambda v: _seconds_setting(v, "0 s")),
        "think_time": ("Think time", lambda v: _seconds_setting(v, "0 s")),
        "timeout": ("Request timeout", lambda v: _seconds_setting(v, "none")),
        "sample_spans": ("Requests traced", lambda v: f"{float(v):.0%}"),
    }
    rows = [(label, show(config[key])) for key, (label, show) in known.items() if key in config]
    rows += [(key, _plain(value)) for key, value in config.items() if key not in known and key != "name"]
    return rows


def _benchmark_settings(report: Mapping[str, Any]) -> list[tuple[str, str]]:
    def get(key: str) -> str:
        return _plain(report[key]) if key in report else "not recorded"

    overhead = report.get("timer_overhead_s")
    return [
        ("Iterations per round", get("iterations")),
        ("Rounds", get("rounds")),
        ("Warmup calls", get("warmup")),
        ("Concurrency", get("concurrency")),
        ("Timer overhead (subtracted)", "not recorded" if overhead is None else _fmt_seconds(float(overhead))),
    ]


def _table(table_id: str, header: tuple[str, str], rows: Sequence[tuple[str, str]]) -> str:
    head = "".join(f"<th>{html.escape(cell)}</th>" for cell in header)
    body = "".join(
        f'<tr><td>{html.escape(label)}</td><td class="num">{html.escape(value)}</td></tr>\n' for label, value in rows
    )
    return f'<table id="{table_id}">\n<thead><tr>{head}</tr></thead>\n<tbody>\n{body}</tbody>\n</table>\n'


def _figure(draw: Callable[[_Axes], None]) -> Figure:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(10, 2.6), layout="constrained")
    FigureCanvasAgg(figure)
    axes = cast("_Axes", figure.add_subplot())
    axes.grid(True, alpha=0.3)
    draw(axes)
    return figure


def _chart(chart_id: str, title: str, figure: Figure) -> str:
    import matplotlib

    # Text as paths (no font needed by the browser) and a fixed hash salt so the same report gives the same SVG.
    # matplotlib's hints leave a PathLike parameter unparameterised: narrow them to the call made here.
    rc_context = cast(
        "Callable[[dict[str, str]], AbstractContextManager[None]]",
        matplotlib.rc_context,  # pyright: ignore[reportUnknownMemberType]
    )
    with rc_context({"svg.fonttype": "path", "svg.hashsalt": "rfobs"}):
        svg = _figure_svg(figure)
    return f'<h2>{html.escape(title)}</h2>\n<div class="chart" id="{chart_id}">\n{svg}\n</div>\n'


def _figure_svg(figure: Figure) -> str:
    buffer = io.StringIO()
    # metadata=None values drop matplotlib's RDF block (date, creator URL, Dublin Core links).
    savefig = cast("Callable[..., None]", figure.savefig)  # pyright: ignore[reportUnknownMemberType]
    savefig(buffer, format="svg", metadata={"Date": None, "Creator": None, "Format": None, "Type": None})
    text = buffer.getvalue()
    match = _SVG_START.search(text)
    return text[match.start() :] if match else text


@dataclass(frozen=True)
class _Bucket:
    """One entry of a load test's series: where it starts, how long it covers, and its figures."""

    start: float
    span: float
    requests: int
    rps: float
    p95_s: float
    errors: int

    @property
    def end(self) -> float:
        return self.start + self.span

    @classmethod
    def of(cls, point: Mapping[str, Any]) -> _Bucket:
        # Reports written before `span_s` existed have whole-second buckets only.
        span = float(point.get("span_s", 1.0))
        requests = int(point["requests"])
        rps = requests / span if "span_s" in point and span > 0 else float(point["rps"])
        return cls(float(point["second"]), span, requests, rps, float(point["p95_s"]), int(point["errors"]))


def _no_data(axes: _Axes) -> None:
    axes.text(0.5, 0.5, "no data", ha="center", va="center", transform=axes.transAxes, color="#57606a")


def _time_axis(axes: _Axes, end: float) -> None:
    axes.set_xlim(0.0, end)
    axes.set_xlabel("seconds into the run")


def _plot_latency(axes: _Axes, series: Sequence[_Bucket], overall: Mapping[str, float], end: float) -> None:
    _time_axis(axes, end)
    if not series:
        _no_data(axes)
        return
    scale, unit = _unit([*(b.p95_s for b in series), *overall.values()])
    # Each bucket's p95 holds over the bucket's whole span: a step, not a line between midpoints.
    xs = [x for b in series for x in (b.start, b.end)]
    ys = [b.p95_s * scale for b in series for _ in (0, 1)]
    axes.plot(xs, ys, color="#d62728", label="p95 per second")
    for key, style in (("p50", ":"), ("p99", "--")):
        if key in overall:
            axes.axhline(overall[key] * scale, linestyle=style, color="#57606a", label=f"{key} over the run")
    axes.set_ylabel(f"latency ({unit})")
    # The legend is one row along the top, above the highest line: room the 1.45 headroom leaves free.
    axes.set_ylim(0.0, max([*ys, overall.get("p99", 0.0) * scale]) * 1.45 or 1.0)
    axes.legend(loc="upper center", ncols=3)


def _bars(axes: _Axes, series: Sequence[_Bucket], values: Sequence[float], color: str) -> None:
    """One bar per bucket, as wide as the time it covered; a short last bucket is hatched and labelled."""
    bars = axes.bar([b.start for b in series], values, width=[b.span for b in series], align="edge", color=color)
    last = series[-1]
    if last.span < 1.0:
        bars[-1].set_alpha(0.55)
        bars[-1].set_hatch("//")
    if last.span < 1.0 and values[-1] > 0:
        axes.annotate(
            f"last {last.span:.2g} s", (last.start + last.span / 2, values[-1]), ha="center", va="bottom", fontsize=8
        )


def _plot_throughput(axes: _Axes, series: Sequence[_Bucket], end: float) -> None:
    _time_axis(axes, end)
    if not series:
        _no_data(axes)
        return
    values = [b.rps for b in series]
    _bars(axes, series, values, "#1f77b4")
    axes.set_ylabel("requests/s")
    axes.set_ylim(0.0, max(values) * 1.2 or 1.0)


def _plot_errors(axes: _Axes, series: Sequence[_Bucket], end: float) -> None:
    from matplotlib.ticker import MaxNLocator

    _time_axis(axes, end)
    axes.yaxis.set_major_locator(MaxNLocator(integer=True))
    axes.set_ylabel("errors")
    # Counts start at 0, and an error-free run shows a flat 0 with room above it, not a band around 0.
    axes.set_ylim(0.0, max([1.0, *(b.errors * 1.2 for b in series)]))
    if not series:
        _no_data(axes)
        return
    _bars(axes, series, [float(b.errors) for b in series], "#d62728")
    if not any(b.errors for b in series):
        axes.text(0.5, 0.5, "no errors", ha="center", va="center", transform=axes.transAxes, color="#57606a")


def _plot_resources(axes: _Axes, resources: Sequence[Mapping[str, Any]], end: float) -> None:
    _time_axis(axes, end)
    if not resources:
        _no_data(axes)
        return
    seconds = [float(sample["second"]) for sample in resources]
    cpu = [float(s["cpu_percent"]) for s in resources]
    rss = [int(s["rss_bytes"]) / 2**20 for s in resources]
    lines = axes.plot(seconds, cpu, color="#1f77b4", marker="o", markersize=3, label="CPU %")
    axes.set_ylabel("CPU (%)", color="#1f77b4")
    # Different headroom on the two axes, so a single sample's two markers do not land on the same spot.
    axes.set_ylim(0.0, max(cpu) * 1.5 or 1.0)
    memory = axes.twinx()
    lines += memory.plot(seconds, rss, color="#2ca02c", marker="s", markersize=3, linestyle="--", label="RSS")
    memory.set_ylabel("RSS (MiB)", color="#2ca02c")
    # Headroom above the peak: without it a flat RSS line lies on the frame's top edge and cannot be seen.
    memory.set_ylim(0.0, max(rss) * 1.25 or 1.0)
    axes.legend(lines, [line.get_label() for line in lines], loc="lower right")


def _plot_percentiles(axes: _Axes, latency: Mapping[str, float]) -> None:
    """Latency by percentile on a log scale: `max` can be 1000 times p50 without flattening the rest."""
    from matplotlib.ticker import FuncFormatter

    keys = [key for key in ("min", "p50", "p90", "p95", "p99", "max") if key in latency]
    if not keys:
        _no_data(axes)
        return
    floor = 1e-9  # a log scale has no 0: a zero latency (below the timer's resolution) is drawn at 1 ns
    values = [max(latency[key], floor) for key in keys]
    positions = list(range(len(keys)))
    axes.plot(positions, values, color="#1f77b4", marker="o")
    for x, key in zip(positions, keys, strict=True):
        axes.annotate(_fmt_seconds(latency[key]), (x, max(latency[key], floor)), xytext=(0, 6),
                      textcoords="offset points", ha="center", fontsize=8)  # fmt: skip
    if "mean" in latency:
        axes.axhline(
            max(latency["mean"], floor), linestyle="--", color="#57606a", label=f"mean {_fmt_seconds(latency['mean'])}"
        )
        axes.legend(loc="upper left")
    axes.set_yscale("log")
    axes.set_ylim(min(values) / 2, max(values) * 4)
    axes.set_xticks(positions, keys)
    axes.set_xlabel("percentile")
    axes.set_ylabel("latency per call")
    axes.yaxis.set_major_formatter(FuncFormatter(_tick_seconds))


def _tick_seconds(value: float, _position: object) -> str:
    return _fmt_seconds(value)


def _unit(values: Sequence[float]) -> tuple[float, str]:
    """The scale and unit that put the largest value between 1 and 1000."""
    top = max(values, default=0.0)
    for scale, unit in ((1.0, "s"), (1e3, "ms"), (1e6, "µs")):
        if top >= 1.0 / scale:
            return scale, unit
    return 1e9, "ns"


def _fmt_seconds(value: float) -> str:
    scale, unit = _unit([value])
    return f"{value * scale:.3g} {unit}" if value else "0 s"
