"""Builds the API reference of jaxsuite from its docstrings with pdoc.

    python docs/build.py            # writes docs/api/index.html
    python docs/build.py --out DIR

One page per module, ``jaxsuite.kernels`` included. Any warning pdoc raises
(an annotation it cannot resolve, a module that fails to import) fails the
build, so the reference never silently drops a page or a signature.
"""

from __future__ import annotations

import argparse
import inspect
import os
import pathlib
import pkgutil
import sys
import warnings

os.environ.setdefault("JAX_PLATFORMS", "cpu")

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _modules() -> list[str]:
    import jaxsuite

    names = ["jaxsuite"]
    for info in pkgutil.walk_packages(jaxsuite.__path__, "jaxsuite."):
        names.append(info.name)
    import jaxsuite.kernels

    for info in pkgutil.walk_packages(jaxsuite.kernels.__path__, "jaxsuite.kernels."):
        names.append(info.name)
    return sorted(set(names))


def _fix_namedtuple_constructors(module_names: list[str]) -> None:
    """Points each NamedTuple's generated ``__new__`` at its defining module.

    ``typing.NamedTuple`` builds ``__new__`` in a synthetic namespace, so with
    postponed annotations pdoc would look up the field types (``np.ndarray``,
    sibling classes) in that empty namespace instead of the class's module.
    """
    for name in module_names:
        module = sys.modules.get(name)
        for _, obj in inspect.getmembers(module, inspect.isclass):
            if (
                issubclass(obj, tuple)
                and hasattr(obj, "_fields")
                and obj.__module__ == name
                and obj.__new__.__module__ != name
            ):
                obj.__new__.__module__ = name


def build(out: pathlib.Path) -> list[str]:
    """Writes the HTML reference to ``out``; returns the documented modules."""
    import importlib

    import pdoc

    names = _modules()
    for name in names:
        importlib.import_module(name)
    _fix_namedtuple_constructors(names)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        pdoc.pdoc("jaxsuite", output_directory=out)
    return names


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(ROOT / "docs" / "api"))
    args = parser.parse_args()
    names = build(pathlib.Path(args.out))
    print(f"{len(names)} modules documented in {args.out}/index.html")


if __name__ == "__main__":
    main()
