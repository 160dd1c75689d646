"""Every Python example in the README runs as a user would run it: alone, in a fresh process.

Each ```python block is written to a file in an empty folder and run with this environment's
interpreter (offline: no provider keys). A block that opens PostgreSQL gets a fresh schema of the
test server instead of the README's DSN.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.servers import offline_environment

REPO = Path(__file__).resolve().parents[2]
README_DSN = "postgresql://postgres@127.0.0.1:5432/test"


def python_examples() -> list[str]:
    """The README's ```python blocks, in order."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    return re.findall(r"^```python\n(.*?)^```$", text, flags=re.M | re.S)


EXAMPLES = python_examples()


def run_example(code: str, folder: Path) -> subprocess.CompletedProcess[str]:
    script = folder / "example.py"
    script.write_text(code, encoding="utf-8")
    return subprocess.run(
        [sys.executable, str(script)],
        cwd=folder,
        env=offline_environment({"SWITCHYARD_CHECKPOINTER": str(folder / "state.sqlite")}),
        capture_output=True,
        text=True,
        timeout=300,
    )


ALLOWED_ROOTS = {"switchyard", "langgraph", "langchain", "langchain_core", "typing"}
"""What a README example may import: Switchyard's public API, LangChain's and LangGraph's."""


def test_the_readme_has_python_examples_and_they_import_only_switchyard() -> None:
    assert len(EXAMPLES) >= 3
    for code in EXAMPLES:
        for module in re.findall(r"^(?:from|import) ([\w.]+)", code, flags=re.M):
            root = module.split(".")[0]
            assert root in ALLOWED_ROOTS, module
            if root == "switchyard":
                assert module == "switchyard", f"import from switchyard, not {module}"


@pytest.mark.parametrize("index", range(len(EXAMPLES)))
def test_readme_example_runs(index: int, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    code = EXAMPLES[index]
    if README_DSN in code:
        code = code.replace(README_DSN, request.getfixturevalue("postgres_dsn"))
    done = run_example(code, tmp_path)
    assert done.returncode == 0, f"README example {index + 1} failed:\n{code}\n{done.stderr}"


def test_the_first_example_routes_to_the_docs_agent(tmp_path: Path) -> None:
    """The first example prints the agent, the confidence, the tokens and the cost."""
    done = run_example(EXAMPLES[0], tmp_path)
    assert done.returncode == 0, done.stderr
    agent, confidence, tokens, cost = done.stdout.split()
    assert agent == "docs"
    assert 0.5 < float(confidence) <= 1.0
    assert int(tokens) > 0
    assert float(cost) == 0.0  # the offline model costs nothing
