"""The API reference builds from the docstrings, with a page per package."""

import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).parents[1]


def test_api_docs_build_without_warnings(tmp_path):
    proc = subprocess.run(
        [sys.executable, str(ROOT / "docs" / "build.py"), "--out", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    pages = {p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*.html")}
    packages = [
        p.name for p in (ROOT / "jaxsuite").iterdir() if (p / "__init__.py").exists()
    ]
    for name in packages:
        assert f"jaxsuite/{name}.html" in pages
    assert "jaxsuite/kernels/hash_encoding.html" in pages
    assert "jaxsuite/kernels/splatting.html" in pages
