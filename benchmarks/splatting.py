"""Tile rasteriser timing: forward and forward+backward by Gaussians and size.

Times ``jaxsuite.kernels.splatting.api.rasterize`` on random screen-space
frames (``testing.random_scene``) for each number of Gaussians and image
size. On CPU the dense reference and the tiled XLA path are timed (the Pallas
kernel runs there only in the slow interpreter; ``--pallas`` adds it anyway);
on GPU the Pallas kernel is timed as well. Forward+backward is one VJP with a
fixed cotangent, returning the gradients of means, conics, colours and
opacities. The dense reference is skipped where ``H W N`` exceeds
``--max_dense`` elements.

    python benchmarks/splatting.py --sizes=64,128 --gaussians=1000,4000

Writes ``benchmarks/results/splatting_<backend>.json`` and prints a table.
"""

from __future__ import annotations

import json
import os
import pathlib

import bench_util
import jax
from absl import app, flags
from jaxsuite.kernels.splatting import api, binning
from jaxsuite.kernels.splatting.testing import random_scene

_SIZES = flags.DEFINE_list("sizes", ["64", "128"], "Square image sizes in pixels.")
_GAUSSIANS = flags.DEFINE_list("gaussians", ["1000", "4000"], "Gaussians per frame.")
_REPEATS = flags.DEFINE_integer("repeats", 5, "Timed calls per measurement.")
_MAX_DENSE = flags.DEFINE_float(
    "max_dense", 2e7, "Skip the dense reference above H W N elements."
)
_TILE = flags.DEFINE_integer("tile", 16, "Tile side of the reference and XLA paths.")
_MAX_PER_TILE = flags.DEFINE_integer("max_per_tile", 512, "XLA path's list length.")
_PALLAS = flags.DEFINE_bool("pallas", False, "Time the Pallas kernel on CPU too.")
_OUT = flags.DEFINE_string("out", None, "JSON path (default: results/).")


def bench(sizes, gaussians, implementations, repeats, max_dense, tile, per_tile):
    rows = []
    for size in sizes:
        for n in gaussians:
            frame = random_scene(jax.random.key(0), n, size, size, scale=2.0)
            depths, radii = frame[4], frame[5]
            cot = jax.random.normal(jax.random.key(1), (size, size, 3))
            # A workspace twice the frame's need (binning cost grows with it).
            needed = int(
                jax.numpy.sum(
                    binning.count_intersections(frame[0], radii, size, size, tile)
                )
            )
            capacity = max(1024, 1 << (2 * needed - 1).bit_length())
            for impl in implementations:
                if impl == "reference" and size * size * n > max_dense:
                    continue
                kw = dict(
                    width=size,
                    height=size,
                    capacity=capacity,
                    max_per_tile=per_tile,
                    tile=16 if impl == "pallas" else tile,
                    implementation=impl,
                    interpret=jax.default_backend() == "cpu",
                )

                def render(m, c, col, o, kw=kw, depths=depths, radii=radii):
                    return api.rasterize(m, c, col, o, depths, radii, **kw)

                def fwd_bwd(m, c, col, o, render=render, cot=cot):
                    out, pull = jax.vjp(lambda *a: render(*a).image, m, c, col, o)
                    return out, *pull(cot)

                out = jax.jit(render)(*frame[:4])
                for pname, fn in (
                    ("forward", jax.jit(lambda *a, r=render: r(*a).image)),
                    ("forward_backward", jax.jit(fwd_bwd)),
                ):
                    first, median = bench_util.time_fn(fn, frame[:4], repeats)
                    rows.append(
                        {
                            "size": size,
                            "gaussians": n,
                            "implementation": impl,
                            "pass": pname,
                            "median_ms": round(1e3 * median, 3),
                            "frames_per_s": round(1.0 / median, 2),
                            "compile_s": round(first, 2),
                            "intersections": int(out.num_intersections),
                            "capacity": capacity,
                            "overflow": bool(out.overflow),
                        }
                    )
                    print(rows[-1], flush=True)
    return rows


def table(rows) -> str:
    lines = [
        "| size | N | implementation | pass | ms | frames/s |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['size']} | {r['gaussians']} | {r['implementation']} | "
            f"{r['pass']} | {r['median_ms']} | {r['frames_per_s']} |"
        )
    return "\n".join(lines)


def main(argv) -> None:
    del argv
    backend = jax.default_backend()
    impls = ["reference", "xla"]
    if backend == "gpu" or _PALLAS.value:
        impls.append("pallas")
    rows = bench(
        [int(s) for s in _SIZES.value],
        [int(n) for n in _GAUSSIANS.value],
        impls,
        _REPEATS.value,
        _MAX_DENSE.value,
        _TILE.value,
        _MAX_PER_TILE.value,
    )
    out = _OUT.value or str(
        pathlib.Path(__file__).parent / "results" / f"splatting_{backend}.json"
    )
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    info = bench_util.bench_env()
    with open(out, "w") as f:
        json.dump({"env": info, "rows": rows}, f, indent=2)
    print(table(rows))
    print("wrote", out)


if __name__ == "__main__":
    app.run(main)
