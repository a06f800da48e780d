"""The notebooks run headless from top to bottom without an error, in the venv's python3 kernel
with HOME, the JUPYTER_* folders and IPYTHONDIR in a tmp folder. Their run times are printed
(measured on 2 idle cores: explorer 6 s, tutorial 15 s, reproduce_paper 38 s), not asserted."""

from __future__ import annotations

import os
import time

import pytest
from jupyter_env import NOTEBOOKS, descendants, isolated_env, patched_environ

nbformat = pytest.importorskip("nbformat", reason="the app extra is not installed")
nbclient = pytest.importorskip("nbclient", reason="the app extra is not installed")

pytestmark = pytest.mark.slow

NOTEBOOK_NAMES = ("explorer", "tutorial", "reproduce_paper")


def execute(name: str, home) -> tuple[object, float]:
    """Run notebooks/<name>.ipynb in a fresh kernel; return the executed notebook and seconds.
    A cell that runs for 300 s is taken for hung and fails the test."""
    nb = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
    client = nbclient.NotebookClient(nb, kernel_name="python3", timeout=300,
                                     resources={"metadata": {"path": str(NOTEBOOKS)}})
    start = time.perf_counter()
    with patched_environ(isolated_env(home)):
        client.execute()
    return nb, time.perf_counter() - start


def outputs(nb, output_type: str) -> list[dict]:
    return [o for cell in nb.cells if cell.cell_type == "code" for o in cell.get("outputs", [])
            if o.get("output_type") == output_type]


@pytest.mark.parametrize("name", NOTEBOOK_NAMES)
def test_notebook_is_stored_without_outputs(name):
    nb = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
    nbformat.validate(nb)
    code = [cell for cell in nb.cells if cell.cell_type == "code"]
    assert code and all(not c.outputs and c.execution_count is None for c in code)
    assert nb.metadata.kernelspec.name == "python3"


@pytest.mark.parametrize("name", NOTEBOOK_NAMES)
def test_notebook_executes_without_errors(name, tmp_path):
    before = set(descendants(os.getpid()))
    nb, seconds = execute(name, tmp_path)  # a failing cell raises CellExecutionError
    print(f"\n{name}.ipynb executed in {seconds:.1f} s")
    assert not outputs(nb, "error")
    assert set(descendants(os.getpid())) <= before, "the kernel or a party process survived"
    text = "".join(o.get("text", "") for o in outputs(nb, "stream"))
    if name == "tutorial":
        assert "the shares add up to the secret: True" in text
        assert "agrees with the plaintext decision for" in text
    if name == "reproduce_paper":
        assert "not reproduced" not in text or "MNIST" in text
        assert text.count("(paper") >= 4
    displayed = [o for kind in ("display_data", "execute_result") for o in outputs(nb, kind)]
    if name != "explorer":
        assert any("application/vnd.plotly.v1+json" in o.get("data", {}) for o in displayed)
    else:
        assert any("application/vnd.jupyter.widget-view+json" in o.get("data", {})
                   for o in displayed)


@pytest.mark.parametrize("name", ("tutorial", "reproduce_paper"))
def test_notebooks_with_figures_set_the_html_renderer(name):
    """A notebook that shows plotly figures sets plots.use_notebook_renderer() before them, or
    its HTML export has no figure."""
    nb = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
    code = [cell.source for cell in nb.cells if cell.cell_type == "code"]
    first = next(i for i, source in enumerate(code) if "use_notebook_renderer()" in source)
    assert not any("plotly_mimetype\"" in source for source in code)  # the mimetype alone
    assert all("plots." not in source or i >= first for i, source in enumerate(code))


def test_html_export_keeps_the_figures(tmp_path):
    """Executed and exported like `jupyter nbconvert --to html --execute`, a notebook that
    calls use_notebook_renderer keeps its plotly figure (a div and plotly.js, inlined)."""
    from nbconvert import HTMLExporter

    nb = nbformat.v4.new_notebook()
    nb.metadata.kernelspec = {"name": "python3", "display_name": "Python 3",
                              "language": "python"}
    nb.cells = [nbformat.v4.new_code_cell("from explorer import plots\n"
                                          "plots.use_notebook_renderer();"),
                nbformat.v4.new_code_cell("plots.placeholder('a figure kept in HTML')")]
    client = nbclient.NotebookClient(nb, kernel_name="python3", timeout=120)
    with patched_environ(isolated_env(tmp_path)):
        client.execute()
    html, _ = HTMLExporter().from_notebook_node(nb)
    assert html.count('class="plotly-graph-div"') == 1
    assert "Plotly.newPlot" in html and "a figure kept in HTML" in html
    assert "plotly.js v" in html  # inlined: the export draws offline
