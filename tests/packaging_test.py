"""Packaging and dependency-direction checks for the repository layout."""

import ast
import configparser
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).parents[1]
PAPERS = ("gnn", "moe", "lora", "nerf", "splat", "climate", "unlearn", "gen3d")


def _package_folders():
    names = set()
    for init in (ROOT / "jaxsuite").rglob("__init__.py"):
        rel = init.parent.relative_to(ROOT)
        names.add(".".join(rel.parts))
    for init in (ROOT / "kernels").rglob("__init__.py"):
        rel = init.parent.relative_to(ROOT / "kernels")
        names.add(".".join(("jaxsuite", "kernels", *rel.parts)))
    return names


def test_setup_cfg_lists_every_package_folder():
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    listed = set(cfg["options"]["packages"].split())
    assert listed == _package_folders()
    assert "jaxsuite.kernels = kernels" in cfg["options"]["package_dir"]


def _imports(path):
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module


def test_kernels_import_only_jax_numpy_and_themselves():
    allowed = ("jax", "jaxlib", "numpy", "jaxsuite.kernels")
    stdlib = set(sys.stdlib_module_names)
    for path in (ROOT / "kernels").rglob("*.py"):
        for name in _imports(path):
            top = name.split(".")[0]
            ok = top in stdlib or any(
                name == a or name.startswith(a + ".") for a in allowed
            )
            assert ok, f"{path.relative_to(ROOT)} imports {name}"


def test_core_imports_no_paper_and_no_launcher():
    for path in (ROOT / "jaxsuite" / "core").rglob("*.py"):
        for name in _imports(path):
            assert not name.startswith("launch"), f"{path} imports a launcher"
            for paper in PAPERS:
                assert not name.startswith(f"jaxsuite.{paper}"), (
                    f"{path} imports {name}"
                )


def test_import_jaxsuite_is_lazy():
    code = (
        "import sys, jaxsuite; "
        "heavy = [m for m in ('jax', 'flax', 'optax', 'orbax', 'jaxsuite.core') "
        "if m in sys.modules]; "
        "assert not heavy, heavy; "
        "import jaxsuite.core.config as c; assert c.parse_arg('a') == ('a', {})"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd="/")
