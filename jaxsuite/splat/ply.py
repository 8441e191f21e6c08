"""PLY export and import in the standard 3D Gaussian Splatting layout.

Binary little-endian ``vertex`` elements with float32 properties, in the
order splat viewers (SuperSplat, the SIBR viewer, gsplat, nerfstudio) expect::

    x y z nx ny nz f_dc_0..2 f_rest_0..(3 (K-1) - 1) opacity scale_0..2 rot_0..3

``f_rest`` is channel-major (all of red's higher bands, then green's, then
blue's), ``opacity`` is the logit, ``scale_*`` are log standard deviations and
``rot_*`` the raw quaternion ``(w, x, y, z)``; normals are written as zeros.

Files are read and written with ``plyfile`` (as the original 3DGS code does),
so binary (either byte order) and ASCII files with other elements or extra
properties load. The loader never returns wrong data: a cut or corrupted
file, a wrong row count, missing or misnumbered properties, a non-finite
value or a zero quaternion raise ``ValueError`` naming the file (and the
vertex).
"""

from __future__ import annotations

import io

import numpy as np
import plyfile

from jaxsuite.core import atomic
from jaxsuite.splat import gaussians as gl


def property_names(num_sh: int) -> list[str]:
    """Vertex property names for ``num_sh`` SH coefficients per channel."""
    names = ["x", "y", "z", "nx", "ny", "nz"]
    names += [f"f_dc_{i}" for i in range(3)]
    names += [f"f_rest_{i}" for i in range(3 * (num_sh - 1))]
    names += ["opacity"] + [f"scale_{i}" for i in range(3)]
    return names + [f"rot_{i}" for i in range(4)]


def save_ply(path: str, g: gl.Gaussians, *, text: bool = False) -> None:
    """Writes ``g`` (SH degree 0 to 3) as a 3DGS PLY file (atomically).

    Binary little-endian by default; ``text=True`` writes ASCII.
    """
    n, k = g.sh.shape[0], g.sh.shape[1]
    sh = np.asarray(g.sh, np.float32)
    cols = [
        np.asarray(g.means, np.float32),
        np.zeros((n, 3), np.float32),
        sh[:, 0, :],
        sh[:, 1:, :].transpose(0, 2, 1).reshape(n, -1),
        np.asarray(g.opacity_logits, np.float32)[:, None],
        np.asarray(g.log_scales, np.float32),
        np.asarray(g.quats, np.float32),
    ]
    data = np.concatenate(cols, axis=1)
    names = property_names(k)
    rows = np.empty(n, dtype=[(name, "<f4") for name in names])
    for i, name in enumerate(names):
        rows[name] = data[:, i]
    element = plyfile.PlyElement.describe(rows, "vertex")
    with atomic.open_atomic(path, "wb") as f:
        plyfile.PlyData([element], text=text, byte_order="<").write(f)


def _need(num_rest: int) -> list[str]:
    need = ["x", "y", "z", "f_dc_0", "f_dc_1", "f_dc_2", "opacity"]
    need += [f"scale_{i}" for i in range(3)] + [f"rot_{i}" for i in range(4)]
    return need + [f"f_rest_{i}" for i in range(num_rest)]


def _read(path: str) -> plyfile.PlyData:
    """Parses ``path`` whole, checking that nothing is cut or left over."""
    with open(path, "rb") as f:
        raw = f.read()
    stream = io.BytesIO(raw)
    try:
        ply = plyfile.PlyData.read(stream)
    except Exception as e:  # noqa: BLE001 - any parse failure means a bad file
        raise ValueError(
            f"{path}: not a readable PLY file ({type(e).__name__}: {e})."
        ) from None
    if ply.text:
        # ASCII rows are lines: a cut last row would still parse, so the file
        # must end with a newline, and no row may follow the last element.
        body = raw.split(b"end_header", 1)[1].split(b"\n", 1)[-1]
        rows = sum(1 for line in body.split(b"\n") if line.strip())
        expected = sum(len(el.data) for el in ply.elements)
        if not raw.endswith(b"\n"):
            raise ValueError(f"{path}: the last line is cut (no final newline).")
        if rows != expected:
            raise ValueError(
                f"{path}: the header declares {expected} rows but the file holds "
                f"{rows}."
            )
    elif stream.tell() != len(raw):
        raise ValueError(
            f"{path}: {len(raw) - stream.tell()} bytes follow the elements the "
            "header declares (wrong count or corrupted file)."
        )
    return ply


def load_ply(path: str) -> gl.Gaussians:
    """Reads a 3DGS PLY file: binary (either byte order) or ASCII, any element
    order, any property order, extra properties and elements ignored.

    Raises:
      FileNotFoundError: no such file.
      ValueError: a cut or corrupted file, no ``vertex`` element, missing or
        misnumbered 3DGS properties, or a non-finite value or zero quaternion
        (naming the vertex).
    """
    ply = _read(path)
    names = [el.name for el in ply.elements]
    if "vertex" not in names:
        raise ValueError(f"{path}: no 'vertex' element (elements: {names}).")
    vertex = ply["vertex"]
    data = vertex.data
    props = [p.name for p in vertex.properties]
    lists = [
        p.name for p in vertex.properties if isinstance(p, plyfile.PlyListProperty)
    ]
    rest = [p for p in props if p.startswith("f_rest_")]
    missing = [p for p in _need(len(rest)) if p not in props]
    if missing:
        raise ValueError(f"{path}: vertex lacks the 3DGS properties {missing}.")
    num_sh = 1 + len(rest) // 3
    if len(rest) % 3 or int(round(num_sh**0.5)) ** 2 != num_sh:
        raise ValueError(
            f"{path}: {len(rest)} f_rest properties; expected 3 ((d + 1)^2 - 1) "
            "for an SH degree d (0, 9, 24 or 45)."
        )
    used = _need(len(rest))
    bad = [p for p in lists if p in used]
    if bad:
        raise ValueError(f"{path}: properties {bad} are lists, expected numbers.")
    count = len(data)
    col = lambda *keys: np.stack([data[k].astype(np.float32) for k in keys], -1)
    table = col(*used).reshape(count, -1)
    finite = np.all(np.isfinite(table), axis=1)
    if not finite.all():
        row = int(np.argmin(finite))
        raise ValueError(f"{path}: vertex {row} holds a non-finite value.")
    quats = col("rot_0", "rot_1", "rot_2", "rot_3").reshape(count, 4)
    norms = np.linalg.norm(quats.astype(np.float64), axis=-1)
    if count and norms.min() < 1e-12:
        row = int(np.argmin(norms))
        raise ValueError(
            f"{path}: vertex {row} has the zero quaternion {quats[row].tolist()}; "
            "expected a rotation."
        )
    sh = np.zeros((count, num_sh, 3), np.float32)
    sh[:, 0] = col("f_dc_0", "f_dc_1", "f_dc_2").reshape(count, 3)
    if rest:
        ordered = [f"f_rest_{i}" for i in range(len(rest))]
        sh[:, 1:] = col(*ordered).reshape(count, 3, num_sh - 1).transpose(0, 2, 1)
    return gl.Gaussians(
        means=col("x", "y", "z").reshape(count, 3),
        log_scales=col("scale_0", "scale_1", "scale_2").reshape(count, 3),
        quats=quats,
        opacity_logits=data["opacity"].astype(np.float32),
        sh=sh,
    )
