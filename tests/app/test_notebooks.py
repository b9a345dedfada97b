"""Every notebook runs top to bottom on the CPU with the bundled shapes models, and is committed clean."""
import json

import nbformat
import pytest
from nbclient import NotebookClient

from explainers.app import NOTEBOOKS_DIR, notebook_names

NAMES = notebook_names()


def test_all_notebooks_are_there():
    from explainers.registry import EXPLAINERS

    assert NAMES == ["00_tour"] + [e.notebook for e in EXPLAINERS]


@pytest.mark.parametrize("name", NAMES)
def test_committed_without_outputs_and_with_things_to_try(name):
    nb = json.loads((NOTEBOOKS_DIR / f"{name}.ipynb").read_text())
    for cell in nb["cells"]:
        if cell["cell_type"] == "code":
            assert cell["outputs"] == [] and cell["execution_count"] is None
    text = "".join("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "markdown")
    assert "Things to try" in text


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_notebook_executes(name, tmp_path):
    nb = nbformat.read(NOTEBOOKS_DIR / f"{name}.ipynb", as_version=4)
    client = NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}})
    client.execute()
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    # the explainer displayed itself as a widget
    assert any("application/vnd.jupyter.widget-view+json" in o.get("data", {}) for o in outputs)
