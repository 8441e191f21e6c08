"""3DGS PLY export and import."""

import jax
import numpy as np

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
