"""3DGS PLY export and import."""

import jax
import numpy as np
import plyfile
import pytest

from jaxsuite.splat import gaussians as gl
from jaxsuite.splat import ply


def _random(n=11, degree=3):
    k = jax.random.split(jax.random.PRNGKey(0), 5)
    return gl.Gaussians(
        means=np.asarray(jax.random.normal(k[0], (n, 3))),
        log_scales=np.asarray(jax.random.normal(k[1], (n, 3))),
        quats=np.asarray(jax.random.normal(k[2], (n, 4))),
        opacity_logits=np.asarray(jax.random.normal(k[3], (n,))),
        sh=np.asarray(jax.random.normal(k[4], (n, (degree + 1) ** 2, 3))),
    )


def test_round_trip(tmp_path):
    for degree in (0, 3):
        g = _random(degree=degree)
        path = str(tmp_path / f"g{degree}.ply")
        ply.save_ply(path, g)
        back = ply.load_ply(path)
        for a, b in zip(g, back):
            np.testing.assert_array_equal(np.asarray(a, np.float32), b)


def test_layout_matches_the_3dgs_viewer_convention(tmp_path):
    g = _random(n=3, degree=1)
    path = str(tmp_path / "g.ply")
    ply.save_ply(path, g)
    with open(path, "rb") as f:
        raw = f.read()
    head, body = raw.split(b"end_header\n")
    names = [
        line.split()[-1].decode()
        for line in head.splitlines()
        if line.startswith(b"property")
    ]
    expected = ["x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2"]
    expected += [f"f_rest_{i}" for i in range(9)]
    expected += ["opacity", "scale_0", "scale_1", "scale_2"]
    expected += ["rot_0", "rot_1", "rot_2", "rot_3"]
    assert names == expected
    assert b"format binary_little_endian 1.0" in head
    rows = np.frombuffer(body, "<f4").reshape(3, len(expected))
    # f_rest is channel-major: f_rest_{c * 3 + k} = sh[:, 1 + k, c].
    sh = np.asarray(g.sh)
    for c in range(3):
        for k in range(3):
            np.testing.assert_array_equal(rows[:, 9 + c * 3 + k], sh[:, 1 + k, c])
    np.testing.assert_array_equal(rows[:, 18], np.asarray(g.opacity_logits))
    np.testing.assert_array_equal(rows[:, 22:26], np.asarray(g.quats))


def test_reads_reordered_properties_with_extras(tmp_path):
    g = _random(n=4, degree=0)
    names = ply.property_names(1)
    order = names[::-1] + ["extra"]
    cols = {
        "x": g.means[:, 0],
        "y": g.means[:, 1],
        "z": g.means[:, 2],
        "nx": 0 * g.means[:, 0],
        "ny": 0 * g.means[:, 0],
        "nz": 0 * g.means[:, 0],
        "f_dc_0": g.sh[:, 0, 0],
        "f_dc_1": g.sh[:, 0, 1],
        "f_dc_2": g.sh[:, 0, 2],
        "opacity": g.opacity_logits,
        "extra": 0 * g.means[:, 0],
    }
    cols.update({f"scale_{i}": g.log_scales[:, i] for i in range(3)})
    cols.update({f"rot_{i}": g.quats[:, i] for i in range(4)})
    data = np.stack([np.asarray(cols[k], "<f4") for k in order], -1)
    header = [
        "ply",
        "format binary_little_endian 1.0",
        "comment test",
        "element vertex 4",
    ]
    header += [f"property float {k}" for k in order] + ["end_header"]
    path = tmp_path / "r.ply"
    path.write_bytes(("\n".join(header) + "\n").encode() + data.tobytes())
    back = ply.load_ply(str(path))
    np.testing.assert_array_equal(back.quats, np.asarray(g.quats, np.float32))
    np.testing.assert_array_equal(back.sh, np.asarray(g.sh, np.float32))


def _write_rows(path, names, rows, fmt="binary_little_endian"):
    header = ["ply", f"format {fmt} 1.0", f"element vertex {len(rows)}"]
    header += [f"property float {k}" for k in names] + ["end_header"]
    if fmt == "ascii":
        body = "".join(" ".join(repr(float(v)) for v in r) + "\n" for r in rows)
        body = body.encode()
    else:
        body = np.asarray(rows, "<f4" if "little" in fmt else ">f4").tobytes()
    path.write_bytes(("\n".join(header) + "\n").encode() + body)


def test_ascii_big_endian_and_a_leading_element_load_the_same(tmp_path):
    g = _random(n=5, degree=1)
    ply.save_ply(str(tmp_path / "a.ply"), g)
    want = ply.load_ply(str(tmp_path / "a.ply"))
    names = ply.property_names(4)
    rows = np.asarray(_random_rows(want, names))
    for fmt in ("ascii", "binary_big_endian"):
        _write_rows(tmp_path / f"{fmt}.ply", names, rows, fmt)
        for a, b in zip(ply.load_ply(str(tmp_path / f"{fmt}.ply")), want):
            np.testing.assert_array_equal(a, b)
    # A 'face' element declared (and stored) before 'vertex' used to shift
    # every vertex value by the face's bytes.
    raw = (tmp_path / "a.ply").read_bytes()
    head, body = raw.split(b"end_header\n")
    head = head.replace(
        b"element vertex",
        b"element face 1\nproperty list uchar int vertex_indices\nelement vertex",
    )
    face = np.array([3], "u1").tobytes() + np.array([0, 1, 2], "<i4").tobytes()
    (tmp_path / "f.ply").write_bytes(head + b"end_header\n" + face + body)
    for a, b in zip(ply.load_ply(str(tmp_path / "f.ply")), want):
        np.testing.assert_array_equal(a, b)


def _random_rows(g, names):
    cols = {"nx": 0.0, "ny": 0.0, "nz": 0.0}
    n = len(g.means)
    sh = np.asarray(g.sh)
    rest = sh[:, 1:, :].transpose(0, 2, 1).reshape(n, -1)
    out = []
    for i in range(n):
        row = dict(cols, x=g.means[i, 0], y=g.means[i, 1], z=g.means[i, 2])
        row.update({f"f_dc_{c}": sh[i, 0, c] for c in range(3)})
        row.update({f"f_rest_{k}": rest[i, k] for k in range(rest.shape[1])})
        row.update({f"scale_{k}": g.log_scales[i, k] for k in range(3)})
        row.update({f"rot_{k}": g.quats[i, k] for k in range(4)})
        row["opacity"] = g.opacity_logits[i]
        out.append([row[k] for k in names])
    return out


def test_bad_files_raise_errors_naming_file_and_vertex(tmp_path):
    g = _random(n=4, degree=0)
    path = tmp_path / "g.ply"
    ply.save_ply(str(path), g)
    raw = path.read_bytes()
    path.write_bytes(raw[:-5])
    with pytest.raises(ValueError, match=r"g\.ply: not a readable PLY.*end-of-file"):
        ply.load_ply(str(path))
    path.write_bytes(raw + b"\0" * 4)
    with pytest.raises(ValueError, match="4 bytes follow the elements"):
        ply.load_ply(str(path))
    names = ply.property_names(1)
    rows = np.asarray(_random_rows(g, names), np.float32)
    bad = rows.copy()
    bad[2, names.index("rot_0") : names.index("rot_0") + 4] = 0.0
    _write_rows(path, names, bad)
    with pytest.raises(ValueError, match="vertex 2 has the zero quaternion"):
        ply.load_ply(str(path))
    bad = rows.copy()
    bad[1, 0] = np.nan
    _write_rows(path, names, bad)
    with pytest.raises(ValueError, match="vertex 1 holds a non-finite value"):
        ply.load_ply(str(path))
    _write_rows(path, [n for n in names if n != "opacity"], rows[:, 1:])
    with pytest.raises(ValueError, match=r"lacks the 3DGS properties \['opacity'\]"):
        ply.load_ply(str(path))
    _write_rows(path, names, rows, "ascii")
    path.write_bytes(path.read_bytes()[:-1])
    with pytest.raises(ValueError, match="the last line is cut"):
        ply.load_ply(str(path))
    with pytest.raises(FileNotFoundError):
        ply.load_ply(str(tmp_path / "missing.ply"))


def test_ascii_written_by_plyfile_loads(tmp_path):
    """An ASCII file written by plyfile itself (float64 columns, shuffled
    property order) reads back to the same Gaussians as the binary file."""
    g = _random(n=7, degree=2)
    ply.save_ply(str(tmp_path / "b.ply"), g)
    want = ply.load_ply(str(tmp_path / "b.ply"))
    names = ply.property_names(9)
    order = np.random.default_rng(0).permutation(len(names))
    rows = np.asarray(_random_rows(want, names), np.float64)
    table = np.empty(len(rows), dtype=[(names[i], "f8") for i in order])
    for i in order:
        table[names[i]] = rows[:, i]
    element = plyfile.PlyElement.describe(table, "vertex")
    plyfile.PlyData([element], text=True).write(str(tmp_path / "a.ply"))
    assert (tmp_path / "a.ply").read_bytes().startswith(b"ply\nformat ascii 1.0")
    for a, b in zip(ply.load_ply(str(tmp_path / "a.ply")), want):
        np.testing.assert_allclose(a, b, rtol=1e-6)
    ply.save_ply(str(tmp_path / "c.ply"), g, text=True)
    assert b"format ascii" in (tmp_path / "c.ply").read_bytes()[:40]
    for a, b in zip(ply.load_ply(str(tmp_path / "c.ply")), want):
        np.testing.assert_allclose(a, b, rtol=1e-6)
