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
from typing import TYPE_CHECKING, Any, Protocol, cast

from rfobs.exceptions import ConfigError

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["render_html"]


class _Axes(Protocol):
    """The part of matplotlib's `Axes` the charts use, typed fully (matplotlib's own hints leave `**kwargs` unknown)."""

    transAxes: Any
    yaxis: Any

    def grid(self, visible: bool, *, alpha: float) -> object: ...
    def text(self, x: float, y: float, s: str, **kwargs: Any) -> object: ...
    def plot(self, *args: Any, **kwargs: Any) -> object: ...
    def axhline(self, y: float, **kwargs: Any) -> object: ...
    def bar(self, x: Any, height: Any, **kwargs: Any) -> Any: ...
    def bar_label(self, container: Any, *, fmt: str) -> object: ...
    def set_xlabel(self, xlabel: str) -> object: ...
    def set_ylabel(self, ylabel: str, **kwargs: Any) -> object: ...
    def set_ylim(self, *, bottom: float) -> object: ...
    def legend(self, *, loc: str) -> object: ...
    def twinx(self) -> _Axes: ...


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
        report: A result dict as returned by `to_dict()`, with `kind` `"load_test"` or `"benchmark"`.

    Returns:
        The HTML document. It references no external resource; charts are inline `<svg>` elements inside
        containers with ids `chart-latency`, `chart-throughput`, `chart-errors` and `chart-resources` (a
        benchmark has only `chart-latency`).

    Raises:
        ConfigError: `report` has no known `kind` or lacks a field the report needs.
        ImportError: matplotlib is not installed (`pip install 'rfobs[perf]'`).
    """
    kind = report.get("kind")
    if kind not in _KINDS:
        raise ConfigError(f"report['kind'] is {kind!r}; allowed: {', '.join(repr(k) for k in _KINDS)}")
    _load_matplotlib()
    name = str(_field(report, "name"))
    if kind == "load_test":
        title = f"rfobs load test: {name}"
        body = _load_test_body(report)
    else:
        title = f"rfobs benchmark: {name}"
        body = _benchmark_body(report)
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


def _load_test_body(report: Mapping[str, Any]) -> str:
    latency: Mapping[str, float] = _field(report, "latency_s")
    series: Sequence[Mapping[str, Any]] = _field(report, "series")
    resources: Sequence[Mapping[str, Any]] = _field(report, "resources")
    rows = [
        ("Requests", f"{int(_field(report, 'requests')):,}"),
        ("Errors", f"{int(_field(report, 'errors')):,}"),
        ("Error rate", f"{float(_field(report, 'error_rate')) * 100:.2f} %"),
        ("Timeouts", f"{int(_field(report, 'timeouts')):,}"),
        ("Duration", f"{float(_field(report, 'duration_s')):.2f} s"),
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
        parts.append("<section>\n<h2>Configuration</h2>\n")
        parts.append(_table("config", ("Setting", "Value"), [(str(k), repr(v)) for k, v in config.items()]))
        parts.append("</section>\n")
    if errors_by_type:
        parts.append("<section>\n<h2>Errors by type</h2>\n")
        parts.append(
            _table("errors-by-type", ("Exception", "Count"), [(k, f"{v:,}") for k, v in errors_by_type.items()])
        )
        parts.append("</section>\n")
    parts.append("</div>\n")
    seconds = [int(point["second"]) for point in series]
    parts.append(
        _chart("chart-latency", "Latency p95 per second", lambda ax: _plot_latency(ax, seconds, series, latency))
    )
    parts.append(
        _chart(
            "chart-throughput",
            "Throughput per second",
            lambda ax: _plot_line(ax, seconds, [float(p["rps"]) for p in series], "requests/s", "#1f77b4"),
        )
    )
    parts.append(_chart("chart-errors", "Errors per second", lambda ax: _plot_errors(ax, seconds, series)))
    parts.append(_chart("chart-resources", "Process CPU and memory", lambda ax: _plot_resources(ax, resources)))
    return "".join(parts)


def _benchmark_body(report: Mapping[str, Any]) -> str:
    latency: Mapping[str, float] = _field(report, "latency_s")
    rows = [
        ("Iterations", f"{int(_field(report, 'iterations')):,}"),
        ("Operations/s", f"{float(_field(report, 'ops_per_s')):,.1f}"),
        ("Errors", f"{int(_field(report, 'errors')):,}"),
        ("CPU", f"{float(_field(report, 'cpu_percent')):.1f} %"),
        ("RSS", f"{int(_field(report, 'rss_bytes')) / 2**20:,.1f} MiB"),
    ]
    rows += [(f"Latency {key}", _fmt_seconds(latency[key])) for key in ("stdev", *_PERCENTILES) if key in latency]
    keys = [key for key in _PERCENTILES if key in latency]
    return (
        '<p class="subtitle">Benchmark summary</p>\n'
        + _table("summary", ("Measure", "Value"), rows)
        + _chart("chart-latency", "Latency per call", lambda ax: _plot_bars(ax, keys, [latency[k] for k in keys]))
    )


def _table(table_id: str, header: tuple[str, str], rows: Sequence[tuple[str, str]]) -> str:
    head = "".join(f"<th>{html.escape(cell)}</th>" for cell in header)
    body = "".join(
        f'<tr><td>{html.escape(label)}</td><td class="num">{html.escape(value)}</td></tr>\n' for label, value in rows
    )
    return f'<table id="{table_id}">\n<thead><tr>{head}</tr></thead>\n<tbody>\n{body}</tbody>\n</table>\n'


def _chart(chart_id: str, title: str, draw: Callable[[_Axes], None]) -> str:
    import matplotlib
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    # Text as paths (no font needed by the browser) and a fixed hash salt so the same report gives the same SVG.
    # matplotlib's hints leave a PathLike parameter unparameterised: narrow them to the call made here.
    rc_context = cast(
        "Callable[[dict[str, str]], AbstractContextManager[None]]",
        matplotlib.rc_context,  # pyright: ignore[reportUnknownMemberType]
    )
    with rc_context({"svg.fonttype": "path", "svg.hashsalt": "rfobs"}):
        figure = Figure(figsize=(10, 2.6), layout="constrained")
        FigureCanvasAgg(figure)
        axes = cast("_Axes", figure.add_subplot())
        axes.grid(True, alpha=0.3)
        draw(axes)
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


def _no_data(axes: _Axes) -> None:
    axes.text(0.5, 0.5, "no data", ha="center", va="center", transform=axes.transAxes, color="#57606a")


def _plot_latency(
    axes: _Axes, seconds: Sequence[int], series: Sequence[Mapping[str, Any]], overall: Mapping[str, float]
) -> None:
    values = [float(point["p95_s"]) for point in series]
    scale, unit = _unit([*values, *overall.values()])
    if not seconds:
        _no_data(axes)
        return
    axes.plot(seconds, [v * scale for v in values], marker="o", markersize=3, color="#d62728", label="p95 per second")
    for key, style in (("p50", ":"), ("p99", "--")):
        if key in overall:
            axes.axhline(overall[key] * scale, linestyle=style, color="#57606a", label=f"{key} over the run")
    axes.set_xlabel("second of the run")
    axes.set_ylabel(f"latency ({unit})")
    axes.set_ylim(bottom=0)
    axes.legend(loc="lower right")


def _plot_line(axes: _Axes, seconds: Sequence[int], values: Sequence[float], label: str, color: str) -> None:
    if not seconds:
        _no_data(axes)
        return
    axes.plot(seconds, values, marker="o", markersize=3, color=color)
    axes.set_xlabel("second of the run")
    axes.set_ylabel(label)
    axes.set_ylim(bottom=0)


def _plot_errors(axes: _Axes, seconds: Sequence[int], series: Sequence[Mapping[str, Any]]) -> None:
    if not seconds:
        _no_data(axes)
        return
    from matplotlib.ticker import MaxNLocator

    axes.bar(seconds, [int(point["errors"]) for point in series], color="#d62728")
    axes.yaxis.set_major_locator(MaxNLocator(integer=True))
    axes.set_xlabel("second of the run")
    axes.set_ylabel("errors")


def _plot_resources(axes: _Axes, resources: Sequence[Mapping[str, Any]]) -> None:
    if not resources:
        _no_data(axes)
        return
    seconds = [float(sample["second"]) for sample in resources]
    axes.plot(seconds, [float(s["cpu_percent"]) for s in resources], color="#1f77b4", label="CPU %")
    axes.set_xlabel("second of the run")
    axes.set_ylabel("CPU (%)", color="#1f77b4")
    axes.set_ylim(bottom=0)
    memory = axes.twinx()
    memory.plot(seconds, [int(s["rss_bytes"]) / 2**20 for s in resources], color="#2ca02c", label="RSS")
    memory.set_ylabel("RSS (MiB)", color="#2ca02c")
    memory.set_ylim(bottom=0)


def _plot_bars(axes: _Axes, labels: Sequence[str], values: Sequence[float]) -> None:
    if not labels:
        _no_data(axes)
        return
    scale, unit = _unit(values)
    bars = axes.bar(list(labels), [v * scale for v in values], color="#1f77b4")
    axes.bar_label(bars, fmt="%.3g")
    axes.set_ylabel(f"latency ({unit})")


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
