"""Mesh export: marching cubes on an SDF grid, OBJ and PLY files with colours.

``marching_cubes`` wraps ``skimage.measure.marching_cubes`` at level 0 and
maps vertices to world coordinates; faces are wound so that normals point
out of the object (toward positive SDF). OBJ files carry per-vertex colours
as the widely read ``v x y z r g b`` extension; PLY files are ASCII with
``uchar`` vertex colours, which MeshLab, Blender and Open3D read.
"""

from __future__ import annotations

import os

import numpy as np


def marching_cubes(grid: np.ndarray, bound: float) -> tuple[np.ndarray, np.ndarray]:
    """Zero set of a node grid over ``[-bound, bound]^3``.

    Returns:
      ``(vertices (V, 3) float32, faces (F, 3) int32)``; empty arrays when the
      grid has no sign change.
    """
    from skimage import measure

    grid = np.array(grid, np.float32)  # a writable copy (skimage needs one)
    if grid.min() >= 0.0 or grid.max() <= 0.0:
        return np.zeros((0, 3), np.float32), np.zeros((0, 3), np.int32)
    h = 2.0 * bound / (grid.shape[0] - 1)
    verts, faces, _, _ = measure.marching_cubes(grid, level=0.0, spacing=(h, h, h))
    # With skimage's default winding, face normals point toward increasing
    # values: out of the object for an SDF.
    return (verts - bound).astype(np.float32), faces.astype(np.int32)


def _rgb8(colors: np.ndarray) -> np.ndarray:
    return np.clip(np.round(np.asarray(colors) * 255.0), 0, 255).astype(np.uint8)


def write_obj(
    path: str, vertices: np.ndarray, faces: np.ndarray, colors: np.ndarray | None = None
) -> str:
    """Writes a Wavefront OBJ (1-based faces; colours in ``[0, 1]`` optional)."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as f:
        f.write("# jaxsuite.gen3d mesh\n")
        for i, v in enumerate(vertices):
            if colors is None:
                f.write(f"v {v[0]:.6f} {v[1]:.6f} {v[2]:.6f}\n")
            else:
                c = colors[i]
                f.write(
                    f"v {v[0]:.6f} {v[1]:.6f} {v[2]:.6f} "
                    f"{c[0]:.4f} {c[1]:.4f} {c[2]:.4f}\n"
                )
        for tri in np.asarray(faces) + 1:
            f.write(f"f {tri[0]} {tri[1]} {tri[2]}\n")
    return path


def write_ply(
    path: str, vertices: np.ndarray, faces: np.ndarray, colors: np.ndarray | None = None
) -> str:
    """Writes an ASCII PLY with optional ``uchar`` vertex colours."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    header = ["ply", "format ascii 1.0", f"element vertex {len(vertices)}"]
    header += ["property float x", "property float y", "property float z"]
    if colors is not None:
        header += ["property uchar red", "property uchar green", "property uchar blue"]
    header += [f"element face {len(faces)}", "property list uchar int vertex_indices"]
    header += ["end_header"]
    rgb = _rgb8(colors) if colors is not None else None
    with open(path, "w") as f:
        f.write("\n".join(header) + "\n")
        for i, v in enumerate(vertices):
            line = f"{v[0]:.6f} {v[1]:.6f} {v[2]:.6f}"
            if rgb is not None:
                line += f" {rgb[i, 0]} {rgb[i, 1]} {rgb[i, 2]}"
            f.write(line + "\n")
        for tri in faces:
            f.write(f"3 {tri[0]} {tri[1]} {tri[2]}\n")
    return path


def read_ply(path: str) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Reads an ASCII PLY written by :func:`write_ply`."""
    with open(path) as f:
        lines = f.read().splitlines()
    end = lines.index("end_header")
    n_v = int(next(ln.split()[-1] for ln in lines if ln.startswith("element vertex")))
    n_f = int(next(ln.split()[-1] for ln in lines if ln.startswith("element face")))
    has_color = any("uchar red" in ln for ln in lines[:end])
    rows = [ln.split() for ln in lines[end + 1 : end + 1 + n_v]]
    verts = np.array([[float(x) for x in r[:3]] for r in rows], np.float32)
    cols = (
        np.array([[int(x) for x in r[3:6]] for r in rows], np.uint8)
        if has_color
        else None
    )
    faces = np.array(
        [
            [int(x) for x in ln.split()[1:4]]
            for ln in lines[end + 1 + n_v : end + 1 + n_v + n_f]
        ],
        np.int32,
    )
    return verts, faces, cols
