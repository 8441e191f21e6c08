"""PLY export and import in the standard 3D Gaussian Splatting layout.

Binary little-endian ``vertex`` elements with float32 properties, in the
order splat viewers (SuperSplat, the SIBR viewer, gsplat, nerfstudio) expect::

    x y z nx ny nz f_dc_0..2 f_rest_0..(3 (K-1) - 1) opacity scale_0..2 rot_0..3

``f_rest`` is channel-major (all of red's higher bands, then green's, then
blue's), ``opacity`` is the logit, ``scale_*`` are log standard deviations and
``rot_*`` the raw quaternion ``(w, x, y, z)``; normals are written as zeros.
"""

from __future__ import annotations

import numpy as np

from jaxsuite.splat import gaussians as gl

_TYPES = {
    "float": "<f4",
    "float32": "<f4",
    "double": "<f8",
    "float64": "<f8",
    "uchar": "u1",
    "uint8": "u1",
    "int": "<i4",
    "int32": "<i4",
}


def property_names(num_sh: int) -> list[str]:
    """Vertex property names for ``num_sh`` SH coefficients per channel."""
    names = ["x", "y", "z", "nx", "ny", "nz"]
    names += [f"f_dc_{i}" for i in range(3)]
    names += [f"f_rest_{i}" for i in range(3 * (num_sh - 1))]
    names += ["opacity"] + [f"scale_{i}" for i in range(3)]
    return names + [f"rot_{i}" for i in range(4)]


def save_ply(path: str, g: gl.Gaussians) -> None:
    """Writes ``g`` (SH degree 0 to 3) as a binary 3DGS PLY file."""
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
    data = np.ascontiguousarray(np.concatenate(cols, axis=1), dtype="<f4")
    names = property_names(k)
    header = ["ply", "format binary_little_endian 1.0", f"element vertex {n}"]
    header += [f"property float {name}" for name in names]
    header.append("end_header")
    with open(path, "wb") as f:
        f.write(("\n".join(header) + "\n").encode("ascii"))
        f.write(data.tobytes())


def load_ply(path: str) -> gl.Gaussians:
    """Reads a binary little-endian 3DGS PLY file (any property order).

    Raises:
      ValueError: for ASCII or big-endian files, or missing properties.
    """
    with open(path, "rb") as f:
        if f.readline().strip() != b"ply":
            raise ValueError(f"{path} is not a PLY file.")
        props, count, fmt, in_vertex = [], 0, None, False
        while True:
            line = f.readline()
            if not line:
                raise ValueError(f"{path}: header has no end_header.")
            words = line.decode("ascii").split()
            if not words or words[0] in ("comment", "obj_info"):
                continue
            if words[0] == "end_header":
                break
            if words[0] == "format":
                fmt = words[1]
            elif words[0] == "element":
                in_vertex = words[1] == "vertex"
                if in_vertex:
                    count = int(words[2])
                elif count and not props:
                    raise ValueError(f"{path}: unexpected element before vertex.")
            elif words[0] == "property" and in_vertex:
                if words[1] == "list" or words[1] not in _TYPES:
                    raise ValueError(f"{path}: unsupported property {line!r}.")
                props.append((words[2], _TYPES[words[1]]))
        if fmt != "binary_little_endian":
            raise ValueError(
                f"{path}: only binary_little_endian PLY is supported, got {fmt}."
            )
        data = np.frombuffer(f.read(), dtype=np.dtype(props), count=count)
    names = [p[0] for p in props]
    need = ["x", "y", "z", "f_dc_0", "f_dc_1", "f_dc_2", "opacity"]
    need += [f"scale_{i}" for i in range(3)] + [f"rot_{i}" for i in range(4)]
    missing = [p for p in need if p not in names]
    if missing:
        raise ValueError(f"{path}: missing 3DGS properties {missing}.")
    col = lambda *keys: np.stack([data[k].astype(np.float32) for k in keys], -1)
    rest = sorted(
        (p for p in names if p.startswith("f_rest_")), key=lambda p: int(p[7:])
    )
    num_sh = 1 + len(rest) // 3
    sh = np.zeros((count, num_sh, 3), np.float32)
    sh[:, 0] = col("f_dc_0", "f_dc_1", "f_dc_2")
    if rest:
        sh[:, 1:] = col(*rest).reshape(count, 3, num_sh - 1).transpose(0, 2, 1)
    return gl.Gaussians(
        means=col("x", "y", "z"),
        log_scales=col("scale_0", "scale_1", "scale_2"),
        quats=col("rot_0", "rot_1", "rot_2", "rot_3"),
        opacity_logits=data["opacity"].astype(np.float32),
        sh=sh,
    )
