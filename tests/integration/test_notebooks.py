"""Every notebook runs top to bottom, offline, on the project's own kernel."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

REPO = Path(__file__).resolve().parents[2]
NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb"))
CELL_TIMEOUT_S = 120

# The kernel talks to this process over loopback sockets.
pytestmark = pytest.mark.enable_socket


def test_there_are_notebooks() -> None:
    assert NOTEBOOKS, "notebooks/*.ipynb: one notebook per pattern"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_runs_and_is_committed_clean(path: Path) -> None:
    notebook = nbformat.read(path, as_version=4)  # type: ignore[no-untyped-call]
    code_cells = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert all(not cell.outputs and cell.execution_count is None for cell in code_cells), (
        f"{path.name}: clear the outputs before committing"
    )
    client = NotebookClient(
        notebook,
        timeout=CELL_TIMEOUT_S,
        kernel_name="python3",
        resources={"metadata": {"path": str(path.parent)}},
    )
    try:
        client.execute()
    except CellExecutionError as exc:  # the failing cell's source and traceback
        pytest.fail(f"{path.name}: {exc}", pytrace=False)
    errors = [out for cell in code_cells for out in cell.outputs if out.output_type == "error"]
    assert errors == []
