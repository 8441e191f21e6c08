"""Empty-space skipping in PVD's renderer: samples evaluated and wall time.

The occupancy grid is built from the analytic scene's exact density
(``jaxsuite.nerf.scenes``, several jittered updates), so it marks what a
trained field's grid marks, and rays come from a test camera of that scene.
Each architecture (random weights: the cost of evaluating a field does not
depend on its values) then renders the view and takes a training step
(forward and backward of the image MSE) two ways through the public renderer
API:

* dense: every sample evaluated, unoccupied ones zeroed (``buckets=1``);
* skipping: only occupied samples evaluated, compacted into the smallest of
  ``--buckets`` fixed capacities (``buckets>1``).

Both give the same image (checked here, and against dense sampling without
an occupancy grid in ``tests/nerf/skipping_test.py``).

    python benchmarks/pvd_skipping.py --size=64 --num_samples=64 --archs=hash,mlp

Writes ``benchmarks/results/pvd_skipping_<backend>.json`` and prints a table.
"""

from __future__ import annotations

import functools
import json
import pathlib
import statistics
import time

import bench_util
import jax
import jax.numpy as jnp
from absl import app, flags

from jaxsuite.core import cameras, tables
from jaxsuite.nerf import fields, occupancy, renderer, scenes

FLAGS = flags.FLAGS
flags.DEFINE_integer("size", 64, "Image side in pixels.")
flags.DEFINE_integer("num_samples", 64, "Samples per ray.")
flags.DEFINE_integer("buckets", 4, "Compaction capacities N S / 2^k.")
flags.DEFINE_integer("occ_resolution", 32, "Occupancy grid resolution.")
flags.DEFINE_integer("repeats", 5, "Timed repetitions (median reported).")
flags.DEFINE_list("archs", ["hash", "dense", "vm", "mlp"], "Architectures.")
flags.DEFINE_string("out", "", "Output JSON (default benchmarks/results/...).")


def _median_seconds(fn, args, repeats):
    jax.block_until_ready(fn(*args))  # compile
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - t0)
    return statistics.median(times), min(times), max(times)


def _functions(arch, cfg, mask, o, d, n, bg, target):
    """Jitted ``render(params, buckets)`` and ``grad(params, buckets)``."""

    @functools.partial(jax.jit, static_argnums=1)
    def render(p, buckets):
        return renderer.render_rays(p, arch, cfg, mask, o, d, None, n, bg, buckets)

    @functools.partial(jax.jit, static_argnums=1)
    def grad(p, buckets):
        def loss(p):
            return jnp.mean(jnp.square(render(p, buckets) - target))

        return jax.grad(loss)(p)

    return render, grad


def main(argv):
    del argv
    scene = scenes.default_scene()
    grid = occupancy.init_grid(FLAGS.occ_resolution)
    for i in range(8):
        grid = occupancy.update(
            grid, lambda x: scenes.density(scene, x), jax.random.key(i), bound=1.0
        )
    size, n = FLAGS.size, FLAGS.num_samples
    data = scenes.make_dataset(scene, jax.random.key(4), size=size, n_train=1, n_test=1)
    o, d = cameras.generate_rays(data.test.poses[0], data.test.K, size, size)
    o, d = o.reshape(-1, 3), d.reshape(-1, 3)
    target = data.test.images[0].reshape(-1, 3)
    bg = jnp.ones_like(o)
    valid = renderer.march(None, o, d, grid.mask, n, 1.0).valid
    total, count = int(valid.size), int(jnp.sum(valid))
    sizes = renderer.bucket_sizes(total, FLAGS.buckets)
    capacity = next(s for s in sizes if s >= count)
    cfg = fields.FieldConfig()
    rows = []
    for arch in FLAGS.archs:
        params = fields.init(jax.random.key(0), arch, cfg)

        render, grad = _functions(arch, cfg, grid.mask, o, d, n, bg, target)
        img_d, img_s = render(params, 1), render(params, FLAGS.buckets)
        row = {
            "arch": arch,
            "max_abs_diff": float(jnp.max(jnp.abs(img_d - img_s))),
            "samples_total": total,
            "samples_occupied": count,
            "samples_evaluated_dense": total,
            "samples_evaluated_skipping": capacity,
        }
        for name, fn in (("render", render), ("train_step", grad)):
            t_d = _median_seconds(fn, (params, 1), FLAGS.repeats)
            t_s = _median_seconds(fn, (params, FLAGS.buckets), FLAGS.repeats)
            row[f"{name}_dense_s"] = t_d[0]
            row[f"{name}_skipping_s"] = t_s[0]
            row[f"{name}_speedup"] = t_d[0] / t_s[0]
            row[f"{name}_speedup_range"] = [t_d[1] / t_s[2], t_d[2] / t_s[1]]
        rows.append(row)
        print(json.dumps(row), flush=True)
    out = {
        "benchmark": "pvd_skipping",
        "config": {
            "size": size,
            "num_samples": n,
            "buckets": FLAGS.buckets,
            "bucket_sizes": list(sizes),
            "occ_resolution": FLAGS.occ_resolution,
            "occupied_cells": float(jnp.mean(grid.mask)),
            "repeats": FLAGS.repeats,
        },
        "rows": rows,
        "env": bench_util.bench_env(),
    }
    path = FLAGS.out or str(
        pathlib.Path(__file__).parent
        / "results"
        / f"pvd_skipping_{jax.default_backend()}.json"
    )
    with open(path, "w") as f:
        f.write(json.dumps(out, indent=2, allow_nan=False) + "\n")
    cols = [
        "arch",
        "samples_evaluated_dense",
        "samples_evaluated_skipping",
        "render_dense_s",
        "render_skipping_s",
        "render_speedup",
        "train_step_dense_s",
        "train_step_skipping_s",
        "train_step_speedup",
    ]
    print(tables.markdown_table(rows, cols))
    print("wrote", path)


if __name__ == "__main__":
    app.run(main)
