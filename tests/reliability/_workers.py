"""Run a worker-model script in a fresh interpreter with a hard timeout, and read back what it exported."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

# Every script starts with this: rfobs on the embedded default, writing into the test's directory.
PRELUDE = textwrap.dedent(
    """
    import json, os, sys, time
    import rfobs

    OUT = sys.argv[1]
    SETTINGS = dict(
        tracing__file_path=os.path.join(OUT, "traces.jsonl"),
        tracing__schedule_delay=30.0,  # nothing leaves by the timer: only flushes deliver
        metrics__prometheus_port=0,
        metrics__targets_dir=os.path.join(OUT, "targets"),
        health__enabled=False,
        logging__enabled=False,
        sdk__shutdown_timeout=float(os.environ.get("SHUTDOWN_TIMEOUT", "20")),
    )


    @rfobs.task("worker", "job")
    def job(i):
        return i * 2


    def init_worker():
        rfobs.init(**SETTINGS)
    """
)


@dataclass
class Run:
    """What a script printed and exported."""

    returncode: int
    stdout: str
    stderr: str
    out: Path

    def spans(self) -> list[dict[str, object]]:
        """Every span in the trace file, as OTLP/JSON dicts with their resource's `process.pid` added."""
        path = self.out / "traces.jsonl"
        if not path.exists():
            return []
        spans: list[dict[str, object]] = []
        for line in path.read_text().splitlines():
            for resource_spans in json.loads(line)["resourceSpans"]:
                for scope_spans in resource_spans["scopeSpans"]:
                    spans.extend(scope_spans["spans"])
        return spans

    def names(self) -> list[str]:
        """The span names, sorted."""
        return sorted(str(span["name"]) for span in self.spans())


def run_script(body: str, out: Path, *, timeout: float = 60.0, env: dict[str, str] | None = None) -> Run:
    """Run `PRELUDE + body` with `out` as its argument; a hang fails the test after `timeout` seconds."""
    out.mkdir(parents=True, exist_ok=True)
    script = out / "script.py"
    script.write_text(PRELUDE + textwrap.dedent(body), encoding="utf-8")
    completed = subprocess.run(
        [sys.executable, str(script), str(out)],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=out,
        env=env,
        check=False,
    )
    return Run(completed.returncode, completed.stdout, completed.stderr, out)
