"""The example notebooks: stored without outputs, and each run top to bottom on a kernel.

``examples/notebooks/*.ipynb`` are executed with nbclient on a fresh ipykernel (the
``notebooks`` extra), as a user would run them in Jupyter; each notebook ends with
``assert`` cells on what it computed, so a notebook that runs but gets its results wrong
fails here too. The kernel is a process of its own: a notebook that uses Ray starts (and
shuts down) its own small instance. Deselect with ``-m "not notebook"``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

NOTEBOOKS = Path(__file__).resolve().parent.parent / "examples" / "notebooks"
NAMES = sorted(p.name for p in NOTEBOOKS.glob("*.ipynb"))


def test_there_are_the_four_notebooks() -> None:
    assert NAMES == [
        "01_quickstart.ipynb",
        "02_watch_a_run.ipynb",
        "03_analyse_results.ipynb",
        "04_service_pattern.ipynb",
    ]


@pytest.mark.parametrize("name", NAMES)
def test_notebook_is_stored_without_outputs(name: str) -> None:
    """Committed notebooks carry no outputs or execution counts (they are run by tests)."""
    notebook = json.loads((NOTEBOOKS / name).read_text())
    for index, cell in enumerate(notebook["cells"]):
        if cell["cell_type"] == "code":
            assert cell["outputs"] == [], f"{name}: cell {index} has outputs"
            assert cell["execution_count"] is None, f"{name}: cell {index} has a count"
        assert "attachments" not in cell or not cell["attachments"]


def _execute(name: str, cwd: Path) -> Any:
    """Run one notebook on a fresh python3 kernel (this interpreter); return it executed."""
    nbformat = pytest.importorskip("nbformat", reason='needs the "notebooks" extra')
    nbclient = pytest.importorskip("nbclient", reason='needs the "notebooks" extra')
    pytest.importorskip("ipykernel", reason='needs the "notebooks" extra')
    from jupyter_client.kernelspec import NATIVE_KERNEL_NAME

    notebook = nbformat.read(NOTEBOOKS / name, as_version=4)
    client = nbclient.NotebookClient(
        notebook,
        timeout=120,  # per cell
        kernel_name=NATIVE_KERNEL_NAME,  # the kernel of the interpreter running the tests
        resources={"metadata": {"path": str(cwd)}},
    )
    client.execute()
    return notebook


@pytest.fixture
def kernel_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """The kernel's environment: results under tmp_path, atune importable as here."""
    storage = tmp_path / "results"
    storage.mkdir()
    monkeypatch.setenv("ATUNE_STORAGE_PATH", str(storage))
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    # The kernel imports atune the way this process did (a source checkout on PYTHONPATH).
    import atune

    source = str(Path(atune.__file__).resolve().parent.parent)
    paths = [source, *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(paths))
    monkeypatch.setenv("JUPYTER_PLATFORM_DIRS", "1")  # jupyter_core's migration warning
    return tmp_path


def _outputs(notebook: Any, output_type: str) -> list[Any]:
    return [
        output
        for cell in notebook.cells
        if cell.cell_type == "code"
        for output in cell.outputs
        if output.output_type == output_type
    ]


@pytest.mark.notebook
@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_notebook_runs_and_its_asserts_hold(name: str, kernel_env: Path) -> None:
    notebook = _execute(name, kernel_env)
    assert _outputs(notebook, "error") == []
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert all(cell.execution_count for cell in code)  # every cell ran
    if name == "03_analyse_results.ipynb":
        # The three figures are shown inline as PNG images, as a user sees them.
        images = [o for o in _outputs(notebook, "execute_result") if "image/png" in o.data]
        assert len(images) == 3
