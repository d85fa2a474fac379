"""README.md stays true: its settings table matches the code, and its Python examples run."""

from __future__ import annotations

import ast
import dataclasses
import os
import re
import subprocess
import sys
from pathlib import Path

import rfobs._settings_model as model
from rfobs._settings_model import GROUPS

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")


def attribute_docstrings() -> dict[str, str]:
    """`Group.field` -> the docstring written under the field in _settings_model.py."""
    tree = ast.parse(Path(model.__file__).read_text(encoding="utf-8"))
    docs: dict[str, str] = {}
    for node in tree.body:
        if not isinstance(node, ast.ClassDef):
            continue
        for field, doc in zip(node.body, node.body[1:], strict=False):
            if (
                isinstance(field, ast.AnnAssign)
                and isinstance(field.target, ast.Name)
                and isinstance(doc, ast.Expr)
                and isinstance(doc.value, ast.Constant)
            ):
                docs[f"{node.name}.{field.target.id}"] = str(doc.value.value)
    return docs


def settings_table() -> str:
    docs = attribute_docstrings()
    rows = ["| setting | environment variable | default | meaning |", "|---|---|---|---|"]
    for group, cls in GROUPS.items():
        instance = cls()
        for field in dataclasses.fields(cls):
            default = getattr(instance, field.name)
            shown = "{}" if isinstance(default, dict) or type(default).__name__ == "mappingproxy" else repr(default)
            variable = f"RFOBS_{group.upper()}__{field.name.upper()}"
            meaning = " ".join(docs[f"{cls.__name__}.{field.name}"].split()).replace("|", "\\|")
            rows.append(f"| `{group}.{field.name}` | `{variable}` | `{shown}` | {meaning} |")
    return "\n".join(rows)


def test_readme_settings_table_matches_the_code() -> None:
    table = settings_table()
    assert table in README, (
        "regenerate the table: python -c 'from tests.test_docs import settings_table as t; print(t())'"
    )


def test_readme_opens_with_the_two_commands() -> None:
    commands = re.findall(r"^```(?:bash|sh)\n(.*?)```", README, flags=re.S | re.M)[0]
    assert [line.split("#")[0].strip() for line in commands.strip().splitlines()] == ["make demo", "make test"]
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    assert "\ntest: " in makefile and "\ndemo: " in makefile
    assert "make test" in (ROOT / ".ci" / "run").read_text(encoding="utf-8")


def test_readme_python_examples_run_and_record_what_they_promise(tmp_path: Path) -> None:
    from rfobs.traceview import load_spans

    blocks = re.findall(r"^```python\n(.*?)```", README, flags=re.S | re.M)
    assert blocks
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RFOBS_", "OTEL_"))}
    env["RFOBS_METRICS__PROMETHEUS_PORT"] = "0"  # the examples use the default port; the test must not need it free
    for number, block in enumerate(blocks):
        workdir = tmp_path / f"example_{number}"
        workdir.mkdir()
        script = workdir / f"test_example_{number}.py"
        script.write_text(block, encoding="utf-8")
        # A block that defines tests is run by pytest, so its assertions are checked, not just defined.
        runner = ["-m", "pytest", "-q", "-p", "no:cacheprovider"] if "def test_" in block else []
        result = subprocess.run(
            [sys.executable, *runner, str(script)], cwd=workdir, env=env, capture_output=True, text=True, timeout=60
        )
        assert result.returncode == 0, f"README example {number} failed:\n{block}\n{result.stdout}{result.stderr}"
        # An example that decorates code outside a test promises telemetry: its spans reach the trace file.
        decorated = re.findall(
            r"^@(?:rfobs\.)?(?:task|tool|api_call|llm_call|track_agent_task|track_api_call)\(", block, flags=re.M
        )
        if decorated and "def test_" not in block:
            spans = load_spans(workdir / ".rfobs" / "traces.jsonl") if (workdir / ".rfobs").exists() else []
            assert len(spans) >= len(decorated), f"README example {number} recorded no spans:\n{block}"
    quickstart_trace = subprocess.run(
        [sys.executable, "-m", "rfobs.cli", "traces", "--width", "100"],
        cwd=tmp_path / "example_0",
        env=env,
        capture_output=True,
        text=True,
    )
    assert "researcher.search" in quickstart_trace.stdout


def test_contributing_layout_lists_every_module_with_its_docstring() -> None:
    import ast

    root = Path(__file__).resolve().parent.parent
    listed = [
        line
        for line in (root / "CONTRIBUTING.md").read_text(encoding="utf-8").splitlines()
        if line.startswith("- `rfobs/")
    ]
    expected: list[str] = []
    for path in sorted((root / "rfobs").rglob("*.py")):
        doc = (ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"))) or "").strip().splitlines()
        assert doc, f"{path} has no module docstring"
        expected.append(f"- `{path.relative_to(root).as_posix()}`: {doc[0]}")
    assert listed == expected, "regenerate the Layout list in CONTRIBUTING.md from the module docstrings"
