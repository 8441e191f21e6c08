"""Every launcher has a notebook, and every notebook runs top to bottom.

Each notebook keeps one shape: a Colab-only install cell, a cell tagged
``parameters`` that sets ``PRESET`` and ``WORKDIR``, direct calls of the
package's functions, then the experiment. The execution test runs each one in a
fresh kernel (nbclient, the ``python3`` kernel of this environment, working
directory = repository root) with a cell injected after the parameter cell that
switches it to the ``smoke`` preset and a temporary workdir; any cell error
fails the test.
"""

import ast
import json
import os
import pathlib

import pytest

ROOT = pathlib.Path(__file__).parents[1]
NOT_PAPERS = {"__init__", "suite", "example", "gen3d_prior", "s3t_delete"}
NOTEBOOKS = sorted(p.stem for p in (ROOT / "notebooks").glob("*.ipynb"))


def _load(name):
    return json.loads((ROOT / "notebooks" / f"{name}.ipynb").read_text())


def _code(cell):
    # IPython magics and shell escapes are not Python.
    lines = [
        line
        for line in "".join(cell["source"]).splitlines()
        if not line.lstrip().startswith(("%", "!"))
    ]
    return "\n".join(lines)


def _parameter_cell_index(nb):
    tagged = [
        i
        for i, c in enumerate(nb["cells"])
        if c["cell_type"] == "code" and "parameters" in c["metadata"].get("tags", [])
    ]
    assert len(tagged) == 1, "a notebook has exactly one cell tagged 'parameters'"
    return tagged[0]


def test_each_paper_launcher_has_a_notebook():
    launchers = {p.stem for p in (ROOT / "launch").glob("*.py")} - NOT_PAPERS
    assert launchers == set(NOTEBOOKS)


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_shape(name):
    nb = _load(name)
    assert nb["nbformat"] == 4
    assert nb["cells"][0]["cell_type"] == "markdown"
    code_cells = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert all(
        not c.get("outputs") and not c.get("execution_count") for c in code_cells
    )
    install = "".join(code_cells[0]["source"])
    assert '"google.colab" in sys.modules' in install and "pip install" in install
    params = "".join(nb["cells"][_parameter_cell_index(nb)]["source"])
    assert "PRESET =" in params and "WORKDIR =" in params
    code = "\n".join(_code(c) for c in code_cells)
    ast.parse(code)
    # The notebook teaches the package's functions, not only the launcher's run.
    # The package is the one the launcher takes ``experiment`` from (launchers
    # also import ``jaxsuite.core``, which every notebook uses).
    launcher = (ROOT / "launch" / f"{name}.py").read_text()
    package = next(
        line.split()[1]
        for line in launcher.splitlines()
        if line.startswith("from jaxsuite.")
        and "experiment" in line.split(" import ", 1)[-1].replace(",", " ").split()
    )
    used = set()
    for node in ast.walk(ast.parse(code)):
        if isinstance(node, ast.ImportFrom) and node.module:
            used.update(f"{node.module}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            used.update(a.name for a in node.names)
    api = {
        u
        for u in used
        if u.startswith(package + ".") and not u.startswith(f"{package}.experiment")
    }
    assert api, f"{name}.ipynb calls no function of {package} besides experiment.run"
    assert "experiment.run(" in code


@pytest.mark.slow
@pytest.mark.parametrize(
    # One worker runs a paper's notebook and its smoke tests (their xdist_group
    # is the notebook's name), so the notebook reuses their compiled programs.
    "name",
    [pytest.param(n, marks=pytest.mark.xdist_group(n)) for n in NOTEBOOKS],
)
def test_notebook_runs_at_smoke_size(name, tmp_path):
    nbclient = pytest.importorskip("nbclient")
    nbformat = pytest.importorskip("nbformat")
    nb = nbformat.reads(json.dumps(_load(name)), as_version=4)
    index = _parameter_cell_index(nb)
    workdir = tmp_path / "workdir"
    nb.cells.insert(
        index + 1,
        nbformat.v4.new_code_cell(f'PRESET = "smoke"\nWORKDIR = {str(workdir)!r}'),
    )
    env_before = dict(os.environ)
    os.environ.setdefault("JAX_PLATFORMS", "cpu")
    os.environ["MPLBACKEND"] = "Agg"
    try:
        client = nbclient.NotebookClient(
            nb,
            timeout=600,
            kernel_name="python3",
            resources={"metadata": {"path": str(ROOT)}},
        )
        client.execute()
    finally:
        os.environ.clear()
        os.environ.update(env_before)
    errors = [
        out
        for cell in nb.cells
        if cell.cell_type == "code"
        for out in cell.get("outputs", [])
        if out.get("output_type") == "error"
    ]
    assert not errors
    assert (workdir / "results.json").exists()
