"""Packaging and dependency-direction checks for the repository layout."""

import ast
import configparser
import pathlib
import re
import subprocess
import sys

ROOT = pathlib.Path(__file__).parents[1]
PAPERS = ("gnn", "moe", "lora", "nerf", "splat", "climate", "unlearn", "gen3d")
# The only paper-to-paper imports DESIGN.md allows.
ALLOWED_PAPER_IMPORTS = {("gen3d", "nerf"), ("unlearn", "lora")}


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


def _module_name(path, root=ROOT):
    """Dotted name of a library file, with ``kernels`` as ``jaxsuite.kernels``."""
    rel = path.relative_to(root).with_suffix("")
    parts = list(rel.parts)
    if parts[0] == "kernels":
        parts.insert(0, "jaxsuite")
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _resolved_imports(path, root=ROOT):
    """Every module a file imports, relative imports resolved, at any depth.

    ``from a import b`` yields both ``a`` and ``a.b`` (``b`` may be a module),
    including imports inside functions.
    """
    name = _module_name(path, root)
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            yield from (a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module
            yield module
            yield from (f"{module}.{a.name}" for a in node.names if a.name != "*")


def _paper_of(module):
    parts = module.split(".")
    if len(parts) >= 2 and parts[0] == "jaxsuite" and parts[1] in PAPERS:
        return parts[1]
    return None


def test_resolved_imports_cover_every_form(tmp_path):
    # The checker itself: absolute, from-package, relative and nested imports.
    pkg = tmp_path / "jaxsuite" / "gnn"
    pkg.mkdir(parents=True)
    (pkg / "mod.py").write_text(
        "import jaxsuite.moe.model\n"
        "from jaxsuite import lora\n"
        "from ..nerf import fields\n"
        "from . import graph\n"
        "def f():\n"
        "    from jaxsuite.splat.render import render\n"
    )
    got = set(_resolved_imports(pkg / "mod.py", root=tmp_path))
    assert {
        "jaxsuite.moe.model",
        "jaxsuite.lora",
        "jaxsuite.nerf.fields",
        "jaxsuite.gnn.graph",
        "jaxsuite.splat.render.render",
    } <= got
    papers = {_paper_of(m) for m in got} - {None, "gnn"}
    assert papers == {"moe", "lora", "nerf", "splat"}


def test_no_paper_imports_another():
    found = set()
    for paper in PAPERS:
        for path in sorted((ROOT / "jaxsuite" / paper).rglob("*.py")):
            for module in _resolved_imports(path):
                other = _paper_of(module)
                if other is None or other == paper:
                    continue
                found.add((paper, other))
                assert (paper, other) in ALLOWED_PAPER_IMPORTS, (
                    f"{path.relative_to(ROOT)} imports {module}"
                )
    # The allowed uses exist: if one goes away, shrink the allow-list.
    assert found == ALLOWED_PAPER_IMPORTS


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
        for name in _resolved_imports(path):
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


# Import name of each required distribution whose name differs from it.
_IMPORT_NAMES = {
    "orbax-checkpoint": "orbax",
    "absl-py": "absl",
    "ml-collections": "ml_collections",
    "pillow": "PIL",
    "scikit-learn": "sklearn",
    "scikit-image": "skimage",
}
# Required distributions the library uses without importing them by name.
_USED_INDIRECTLY = {"netCDF4": "xarray's engine='netcdf4' in jaxsuite.climate.data"}


def test_every_required_dependency_is_used_by_the_library():
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    required = [
        re.split(r"[<>=!~\[; ]", line.strip(), maxsplit=1)[0]
        for line in cfg["options"]["install_requires"].splitlines()
        if line.strip()
    ]
    assert len(required) == len(set(required)), "a requirement is listed twice"
    imported = set()
    for folder in ("jaxsuite", "kernels"):
        for path in (ROOT / folder).rglob("*.py"):
            imported |= {name.split(".")[0] for name in _resolved_imports(path)}
    for dist in required:
        if dist in _USED_INDIRECTLY:
            continue
        name = _IMPORT_NAMES.get(dist, dist)
        assert name in imported, (
            f"{dist} is required but never imported: use it or move it to an extra"
        )
