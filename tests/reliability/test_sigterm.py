"""SIGTERM (docker stop, Kubernetes) delivers the running task's span, then the process dies by SIGTERM."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
from pathlib import Path

from tests.reliability._workers import PRELUDE, Run

SLOW_TASK = """
@rfobs.task("worker", "slow")
def slow():
    print("ready", flush=True)
    time.sleep(60)

"""


def _terminate_while_running(tmp_path: Path, body: str) -> Run:
    """Start the script, wait for its 'ready' line, send SIGTERM, and collect what it left."""
    script = tmp_path / "script.py"
    script.write_text(PRELUDE + SLOW_TASK + textwrap.dedent(body), encoding="utf-8")
    with subprocess.Popen(
        [sys.executable, str(script), str(tmp_path)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    ) as process:
        try:
            assert process.stdout is not None
            assert process.stdout.readline().strip() == "ready", process.communicate(timeout=30)
            process.send_signal(signal.SIGTERM)
            stdout, stderr = process.communicate(timeout=30)
        finally:
            process.kill()
    return Run(process.returncode, stdout, stderr, tmp_path)


def test_sigterm_ends_the_running_span_as_terminated_delivers_it_and_dies_by_sigterm(tmp_path: Path) -> None:
    run = _terminate_while_running(
        tmp_path,
        """
        rfobs.init(**SETTINGS)
        job(1)
        slow()
        """,
    )
    assert run.returncode == -signal.SIGTERM, run.stderr
    spans = {str(span["name"]): span for span in run.spans()}
    assert sorted(spans) == ["worker.job", "worker.slow"]
    slow = spans["worker.slow"]
    assert slow["status"] == {"code": 2, "message": "process terminated (SIGTERM) while the span was open"}
    assert {"key": "error.type", "value": {"stringValue": "SIGTERM"}} in slow["attributes"]  # type: ignore[operator]


def test_an_applications_own_sigterm_handler_still_runs_and_the_span_is_delivered(tmp_path: Path) -> None:
    run = _terminate_while_running(
        tmp_path,
        """
        import signal
        def on_term(signum, frame):
            print("app handler", flush=True)
            sys.exit(0)
        signal.signal(signal.SIGTERM, on_term)
        rfobs.init(**SETTINGS)
        slow()
        """,
    )
    # The application's handler ran and exited normally: the span ended by the unwinding, flushed at exit.
    # (rfobs's own ending of open spans is for the default disposition only.)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "app handler"
    assert [str(span["name"]) for span in run.spans()] == ["worker.slow"]


def test_sigterm_handling_can_be_turned_off(tmp_path: Path) -> None:
    run = _terminate_while_running(
        tmp_path,
        """
        rfobs.init(**SETTINGS, sdk__handle_sigterm=False)
        job(1)
        slow()
        """,
    )
    assert run.returncode == -signal.SIGTERM
    assert run.spans() == []  # nothing was flushed: the default disposition killed it at once


def test_after_shutdown_sigterm_has_its_default_disposition_again(tmp_path: Path) -> None:
    run = _terminate_while_running(
        tmp_path,
        """
        import signal
        rfobs.init(**SETTINGS)
        assert signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL
        rfobs.shutdown()
        assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
        slow()
        """,
    )
    assert run.returncode == -signal.SIGTERM
    assert run.spans() == []


def test_a_server_that_restores_the_default_and_re_raises_still_delivers(tmp_path: Path) -> None:
    # What uvicorn does: its handler starts a graceful shutdown; afterwards it restores the disposition it found
    # (the default) and raises SIGTERM again, so no exit hook runs. Spans that end in between must still leave.
    run = _terminate_while_running(
        tmp_path,
        """
        import signal
        stopping = []
        signal.signal(signal.SIGTERM, lambda signum, frame: stopping.append(signum))
        rfobs.init(**SETTINGS)
        print("ready", flush=True)
        while not stopping:
            time.sleep(0.01)
        job(1)  # the graceful shutdown's last request
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.raise_signal(signal.SIGTERM)
        """,
    )
    assert run.returncode == -signal.SIGTERM, run.stderr
    assert run.names() == ["worker.job"]
    assert list((tmp_path / "targets").glob("*.json")) == []  # withdrawn at SIGTERM: no dead target left


def test_sigterm_inside_a_locked_span_still_dies_within_the_deadline(tmp_path: Path) -> None:
    # The signal handler runs in the interrupted thread; if that thread held a lock the handler's work needs (here
    # the running span's own), doing the work inline would deadlock. The process must still die, in time.
    run = _terminate_while_running(
        tmp_path,
        """
        from opentelemetry import trace
        rfobs.init(**{**SETTINGS, "sdk__shutdown_timeout": 2.0})

        @rfobs.task("worker", "locked")
        def locked():
            trace.get_current_span()._lock.acquire()  # as if interrupted inside set_attribute()
            print("ready", flush=True)
            time.sleep(60)

        for i in range(3):
            job(i)  # finished and queued: these must still be delivered
        locked()
        """,
    )
    assert run.returncode == -signal.SIGTERM
    assert run.names() == ["worker.job"] * 3
