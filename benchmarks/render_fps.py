"""Test-time render rate of the whole 3DGS pipeline (no blur MLP).

Times ``jaxsuite.splat.render.render`` (projection, SH colours to degree 3,
tile binning and sorting, rasterisation) on random scenes: ``N`` Gaussians
spread through the view frustum between depths 2 and 6, with standard
deviations of 1 to 4 pixels on screen. This is what Deblurring-3DGS renders at
test time, since the MLP is dropped there. The rasteriser is Pallas on a GPU
and the tiled XLA path elsewhere.

    python benchmarks/render_fps.py --sizes=400,800 --gaussians=100000,500000

Writes ``benchmarks/results/render_fps_<backend>.json`` and prints a table.
"""

from __future__ import annotations

import json
import pathlib

import bench_util
import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags

from jaxsuite.core import cameras, tables
from jaxsuite.splat import render as render_lib
from jaxsuite.splat.scenes import random_scene

_SIZES = flags.DEFINE_list("sizes", ["64", "128"], "Square image sizes in pixels.")
_GAUSSIANS = flags.DEFINE_list("gaussians", ["1000", "10000"], "Gaussians per scene.")
_REPEATS = flags.DEFINE_integer("repeats", 10, "Timed frames per measurement.")
_FOV_DEG = flags.DEFINE_float("fov_deg", 50.0, "Horizontal field of view, degrees.")
_MAX_PER_TILE = flags.DEFINE_integer("max_per_tile", 512, "XLA path's list length.")
_OUT = flags.DEFINE_string(
    "out",
    None,
    "JSON file, or a folder for render_fps_<backend>.json (default: results/).",
)


def bench(sizes, gaussians, repeats, fov_deg, per_tile) -> list[dict]:
    gpu = jax.default_backend() == "gpu"
    impl, tile = ("pallas", 16) if gpu else ("xla", 16)
    rows = []
    for size in sizes:
        K = cameras.intrinsics(size, size, fov_x_deg=fov_deg)
        focal = float(K[0, 0])
        for n in gaussians:
            scene = random_scene(jax.random.key(0), n, focal, fov_deg)
            capacity = 1 << max(12, int(np.ceil(np.log2(16 * n))))

            @jax.jit
            def frame(s, K=K, size=size, capacity=capacity):
                out = render_lib.render(
                    s["means"],
                    s["scales"],
                    s["quats"],
                    s["opacities"],
                    s["sh"],
                    jnp.eye(4),
                    K,
                    width=size,
                    height=size,
                    sh_degree=3,
                    background=jnp.ones(3),
                    capacity=capacity,
                    max_per_tile=per_tile,
                    tile=tile,
                    implementation=impl,
                )
                return out.image, out.num_intersections, out.overflow

            first, median = bench_util.time_fn(frame, (scene,), repeats)
            _, count, overflow = frame(scene)
            rows.append(
                {
                    "size": size,
                    "gaussians": n,
                    "implementation": impl,
                    "median_ms": round(1e3 * median, 3),
                    "frames_per_s": round(1.0 / median, 1),
                    "compile_s": round(first, 2),
                    "intersections": int(count),
                    "capacity": capacity,
                    "overflow": bool(overflow),
                }
            )
            print(rows[-1], flush=True)
    return rows


def main(argv) -> None:
    del argv
    rows = bench(
        [int(s) for s in _SIZES.value],
        [int(n) for n in _GAUSSIANS.value],
        _REPEATS.value,
        _FOV_DEG.value,
        _MAX_PER_TILE.value,
    )
    backend = jax.default_backend()
    out = pathlib.Path(_OUT.value or pathlib.Path(__file__).parent / "results")
    if out.suffix != ".json":
        out = out / f"render_fps_{backend}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"env": bench_util.bench_env(), "rows": rows}, indent=2))
    columns = ["size", "gaussians", "implementation", "median_ms", "frames_per_s"]
    print(tables.markdown_table(rows, columns + ["intersections", "overflow"]))
    print("wrote", out)


if __name__ == "__main__":
    app.run(main)
