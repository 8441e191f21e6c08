"""Every launcher has a notebook, and every notebook is valid and runs its paper."""

import ast
import json
import pathlib

ROOT = pathlib.Path(__file__).parents[1]
NOT_PAPERS = {"__init__", "suite", "example"}


def _code(cell):
    # IPython magics and shell escapes are not Python.
    lines = [
        line
        for line in "".join(cell["source"]).splitlines()
        if not line.lstrip().startswith(("%", "!"))
    ]
    return "\n".join(lines)


def test_each_paper_launcher_has_a_notebook_that_compiles_and_runs_it():
    launchers = {p.stem for p in (ROOT / "launch").glob("*.py")} - NOT_PAPERS
    notebooks = {p.stem for p in (ROOT / "notebooks").glob("*.ipynb")}
    assert launchers == notebooks
    for name in notebooks:
        nb = json.loads((ROOT / "notebooks" / f"{name}.ipynb").read_text())
        assert nb["nbformat"] == 4
        code = "\n".join(_code(c) for c in nb["cells"] if c["cell_type"] == "code")
        ast.parse(code)
        assert f'"configs/{name}.py"' in code
        launcher = (ROOT / "launch" / f"{name}.py").read_text()
        package = next(
            line.split()[1]
            for line in launcher.splitlines()
            if line.startswith("from jaxsuite.") and "import experiment" in line
        )
        assert f"from {package} import experiment" in code
        assert all(
            not c.get("outputs") for c in nb["cells"] if c["cell_type"] == "code"
        )
