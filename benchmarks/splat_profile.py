"""Where the time of a Gaussian-splatting frame goes, stage by stage.

For each scene of a preset (random Gaussians of ``jaxsuite.splat.scenes``,
fixed seeds) and each rasteriser implementation this times

* the end-to-end test-time frame (``render``: covariance, projection, SH
  colours to degree 3, binning, sort, rasterisation) and the training step
  (the frame's forward and backward with respect to means, scales,
  quaternions, opacities and SH, with a fixed image cotangent), each as one
  compiled program, with ``bench_util.time_stats`` (median, p10/p90, min/max);
* the same work split into stages, each jitted alone on materialised inputs:
  forward ``covariance``, ``projection``, ``sh_colors``, ``binning_expand``,
  ``sort``, ``tile_ranges``, ``rasterize`` (given the binning); backward
  ``rasterize_vjp`` (the Pallas backward kernel and the per-Gaussian sum),
  ``segment_sum`` (that sum alone; Pallas only, inside ``rasterize_vjp``, so
  not added again), ``sh_colors_vjp``, ``projection_vjp``, ``covariance_vjp``.

A stage jitted alone writes its outputs to memory and reads them back in the
next stage, and cannot fuse with its neighbours, so the stage sum differs
from the end-to-end time; both are reported side by side
(``*_sum_over_e2e``). Beside each stage sits a stated analytic estimate of
the bytes it moves and its time at the device's spec-sheet HBM bandwidth
(``jaxsuite.splat.stages.analytic_cost``). Memory: the compiled frame's and
training step's ``memory_analysis()`` and the device's peak bytes in use
since start-up. Every row records the frame's intersection count, capacity
and overflow flag, and ``max_error``: the frame's largest absolute
difference from the dense reference rasteriser on a window (the whole image
for small frames), so a fast wrong kernel shows. The batched-camera rows
time ``render_cameras`` (``B`` cameras, one call) against ``B`` single-camera
calls. A case that raises becomes a row naming the error (``failed``) and
the run goes on; the JSON is rewritten after every case.

    python benchmarks/splat_profile.py --preset=tiny   # CPU, under a minute
    python benchmarks/splat_profile.py --preset=gpu    # one GPU
    python benchmarks/splat_profile.py --preset=gpu --cases=anchor,real_3m

Presets: ``tiny`` (64 x 64, 256 Gaussians, 'xla' and 'pallas', the latter
interpreted on CPU, where its timings mean nothing) and ``gpu`` (500,000
Gaussians at 800 x 800 with ``render_fps.py``'s capacity and with the
counted one, 1,000,000 and 3,000,000 at 1920 x 1080, and 4 cameras at
800 x 800; sized for about 4 minutes on one H200). Needs jax, numpy, absl
and jaxsuite importable (``pip install --no-deps -e .``). Writes
``benchmarks/results/splat_profile_<backend>.json`` and prints markdown
tables.
"""

from __future__ import annotations

import functools
import json
import math
import pathlib
import time
import traceback

import bench_util
import jax
import jax.numpy as jnp
from absl import app, flags
from jaxsuite.kernels import splatting

from jaxsuite.core import cameras, tables
from jaxsuite.splat import gaussians as gaussians_lib
from jaxsuite.splat import projection, scenes
from jaxsuite.splat import render as render_lib
from jaxsuite.splat import stages as stages_lib

FOV_DEG = 50.0
TILE = 16
SH_DEGREE = 3
# Max |frame - dense reference| accepted in a row's error_ok.
ERROR_TOLERANCE = 1e-3
_TINY = dict(implementations=("xla", "pallas"), max_per_tile=128, window=None)
_GPU = dict(implementations=("pallas",), max_per_tile=512, window=64)
PRESETS = {
    "tiny": dict(repeats=1, cases=[
        dict(name="tiny", gaussians=256, width=64, height=64, **_TINY),
        dict(name="tiny_depth_first", gaussians=256, width=64, height=64,
             binning="depth_first", **dict(_TINY, implementations=("xla",))),
        dict(name="tiny_x2", gaussians=256, size=64, cameras=2,
             **dict(_TINY, implementations=("pallas",))),
    ]),
    # The anchor first (render_fps.py's capacity: its 8.47 ms on an H200),
    # the heaviest case last.
    "gpu": dict(repeats=10, cases=[
        dict(name="anchor_fps_cap", gaussians=500_000, width=800, height=800,
             capacity_rule="render_fps", **_GPU),
        dict(name="anchor", gaussians=500_000, width=800, height=800, **_GPU),
        dict(name="anchor_depth_first", gaussians=500_000, width=800, height=800,
             binning="depth_first", **_GPU),
        dict(name="anchor_x4", gaussians=500_000, size=800, cameras=4, **_GPU),
        dict(name="real_1m", gaussians=1_000_000, width=1920, height=1080, **_GPU),
        dict(name="real_3m", gaussians=3_000_000, width=1920, height=1080,
             max_repeats=5, **_GPU),
    ]),
}  # fmt: skip


def capacity_for(need: int, gaussians: int, rule: str = "counted") -> int:
    """Workspace slots: a power of two.

    ``counted``: the smallest power of two holding ``need`` intersections
    (at least 4096). ``render_fps``: ``render_fps.py``'s rule, the power of two
    at or above ``16 N`` (at least 4096), whatever the frame needs.
    """
    if rule == "render_fps":
        return 1 << max(12, math.ceil(math.log2(16 * gaussians)))
    if rule != "counted":
        raise ValueError(f"unknown capacity rule {rule!r}")
    return 1 << max(12, (max(need, 1) - 1).bit_length())


def _ms(stats: dict) -> dict:
    keys = ("median", "p10", "p90", "min", "max", "first")
    out = {f"{k}_ms": round(1e3 * stats[f"{k}_s"], 4) for k in keys}
    out["repeats"] = stats["repeats"]
    return out


def _settings(spec: dict, implementation: str, capacity: int) -> dict:
    return dict(
        sh_degree=SH_DEGREE,
        background=jnp.ones(3),
        capacity=capacity,
        max_per_tile=spec["max_per_tile"],
        tile=TILE,
        implementation=implementation,
        interpret=implementation == "pallas" and jax.default_backend() == "cpu",
        binning=spec.get("binning", "two_keys"),
    )


@functools.partial(jax.jit, static_argnames=("width", "height"))
def count_need(scene: dict, c2ws, K, width: int, height: int) -> jax.Array:
    """Tile intersections the scene needs in each camera of ``c2ws (B, 4, 4)``.

    Returns ``(B,)`` int32, exact counts (saturated at 2**30 - 1).
    """
    cov = gaussians_lib.covariance_3d(scene["scales"], scene["quats"])

    def one(c2w):
        p = projection.project(scene["means"], cov, c2w, K, width, height)
        counts = splatting.count_intersections(p.means2d, p.radii, width, height)
        return splatting.total_intersections(counts)

    return jax.vmap(one)(c2ws)


def _timed(fn, args, repeats: int) -> dict:
    return _ms(bench_util.time_stats(fn, args, repeats))


def _stage_timing(fn, args, repeats: int) -> dict:
    """``time_stats`` in ms, plus ``pipelined_ms``: ``k`` calls, one sync, / k.

    Each timed call waits for its result, so a short stage's median includes
    a host round trip; issued back to back, the calls overlap their launch
    overhead with the device's work, which brings short stages closer to
    their device time.
    """
    out = _timed(fn, args, repeats)
    k = max(repeats, 3)
    begin = time.perf_counter()
    jax.block_until_ready([fn(*args) for _ in range(k)])
    out["pipelined_ms"] = round(1e3 * (time.perf_counter() - begin) / k, 4)
    return out


def split_stages(scene, c2w, K, width, height, kw, ct, repeats) -> tuple:
    """Times each stage of ``jaxsuite.splat.stages`` alone.

    Returns ``(forward timings, backward timings, forward outputs)``, timings
    by stage name (None for a stage the implementation lacks).
    """
    size = dict(width=width, height=height, sh_degree=SH_DEGREE)
    fwd, out = stages_lib.forward_stages(
        scene, c2w, K, capacity=kw["capacity"], implementation=kw["implementation"],
        interpret=kw["interpret"], background=kw["background"],
        max_per_tile=kw["max_per_tile"], tile=TILE, binning=kw["binning"], **size,
    )  # fmt: skip
    bwd, _ = stages_lib.backward_stages(scene, c2w, K, out, ct, **size)
    timed = [
        {s.name: _stage_timing(s.fn, s.args, repeats) for s in group}
        for group in (fwd, bwd)
    ]
    backward = {name: timed[1].get(name) for name in stages_lib.BACKWARD}
    return timed[0], backward, out


def _window(width: int, height: int, side: int | None) -> tuple[int, int, int, int]:
    """``(y0, x0, h, w)``: the whole image, or a centred tile-aligned square."""
    if side is None:
        return 0, 0, height, width
    x0 = (width // 2 - side // 2) // TILE * TILE
    y0 = (height // 2 - side // 2) // TILE * TILE
    return y0, x0, side, side


def stage_rows(fwd: dict, bwd: dict, impl: str, *sizes) -> list:
    """One row per stage: timing, share of its sums, analytic bytes, roofline.

    ``sizes`` are ``jaxsuite.splat.stages.analytic_cost``'s ``(n, capacity, used, width,
    height)``.
    """
    peak = bench_util.peak_hbm_bytes_per_s()
    rows = []
    for pass_, timings in (("forward", fwd), ("backward", bwd)):
        for name, stats in timings.items():
            cost = {"bytes": None, "workspace_bytes": None}
            if impl == "pallas":
                cost = stages_lib.analytic_cost(name, *sizes)
            roof = None
            if cost["bytes"] is not None and peak:
                roof = round(1e3 * cost["bytes"] / peak, 4)
            rows.append(
                {
                    "stage": name,
                    "pass": pass_,
                    "median_ms": stats["median_ms"] if stats else None,
                    "timing": stats,
                    "in_sums": name not in stages_lib.NESTED and stats is not None,
                    "analytic_bytes": cost["bytes"],
                    "workspace_bytes": cost["workspace_bytes"],
                    "hbm_roofline_ms": roof,
                }
            )
    fsum = sum(r["median_ms"] for r in rows if r["pass"] == "forward")
    tsum = sum(r["median_ms"] for r in rows if r["in_sums"])
    for r in rows:
        ms = r["median_ms"]
        fwd_share = ms / fsum if ms is not None and r["pass"] == "forward" else None
        r["share_of_forward_sum"] = None if fwd_share is None else round(fwd_share, 4)
        r["share_of_train_sum"] = None if ms is None else round(ms / tsum, 4)
    return rows


def _frame_programs(c2w, K, width, height, kw):
    def frame(s):
        out = render_lib.render(**s, c2w=c2w, K=K, width=width, height=height, **kw)
        return out.image, out.num_intersections, out.overflow

    def train(s, ct):
        _, pull = jax.vjp(lambda s: frame(s)[0], s)
        return pull(ct)[0]

    return jax.jit(frame), jax.jit(train)


def _camera(width: int, height: int, n: int):
    K = cameras.intrinsics(width, height, fov_x_deg=FOV_DEG)
    focal = float(K[0, 0])
    scene = jax.jit(scenes.random_scene, static_argnums=(1, 2, 3, 4))(
        jax.random.key(0), n, focal, FOV_DEG, height / width
    )
    return scene, K


def profile_scene(spec: dict, implementation: str, repeats: int) -> dict:
    """End-to-end frame and training step, stage split, memory and error."""
    width, height, n = spec["width"], spec["height"], spec["gaussians"]
    scene, K = _camera(width, height, n)
    c2w = jnp.eye(4)
    need = int(count_need(scene, c2w[None], K, width=width, height=height)[0])
    capacity = capacity_for(need, n, spec.get("capacity_rule", "counted"))
    kw = _settings(spec, implementation, capacity)
    row = dict(scene=spec["name"], implementation=implementation, gaussians=n)
    row["binning"] = kw["binning"]
    row.update(width=width, height=height, interpret=kw["interpret"])
    row.update(capacity=capacity, capacity_rule=spec.get("capacity_rule", "counted"))
    print(f"profiling {spec['name']} {implementation} capacity={capacity}", flush=True)
    frame, train = _frame_programs(c2w, K, width, height, kw)
    ct = jax.random.normal(jax.random.key(1), (height, width, 3))
    compiled = {}
    for name, fn, args in (("frame", frame, (scene,)), ("train", train, (scene, ct))):
        begin = time.perf_counter()
        compiled[name] = fn.lower(*args).compile()
        row[f"{name}_compile_s"] = round(time.perf_counter() - begin, 3)
    image, count, overflow = compiled["frame"](scene)
    row.update(intersections=int(count), overflow=bool(overflow))
    row["frame"] = _timed(compiled["frame"], (scene,), repeats)
    row["train_step"] = _timed(compiled["train"], (scene, ct), repeats)
    row["frame_memory"] = bench_util.compiled_memory_bytes(compiled["frame"])
    row["train_memory"] = bench_util.compiled_memory_bytes(compiled["train"])
    del compiled
    fwd, bwd, v = split_stages(scene, c2w, K, width, height, kw, ct, repeats)
    sizes = (n, capacity, min(int(count), capacity), width, height)
    row["stages"] = stage_rows(fwd, bwd, implementation, *sizes)
    _sums(row)
    row["stage_image_difference"] = float(jnp.max(jnp.abs(v["image"] - image)))
    window = _window(width, height, spec["window"])
    row["error_window"] = list(window)
    ref = stages_lib.reference_window(
        v["proj"], v["colors"], scene["opacities"], width, height, window,
        kw["background"],
    )  # fmt: skip
    y0, x0, h, w = window
    row["max_error"] = float(jnp.max(jnp.abs(image[y0 : y0 + h, x0 : x0 + w] - ref)))
    row["error_ok"] = row["max_error"] <= ERROR_TOLERANCE
    row["peak_memory_bytes"] = bench_util.peak_memory_bytes()
    return row


def _sums(row: dict) -> None:
    """Stage sums beside the end-to-end medians (they differ by fusion)."""
    stages = row["stages"]
    fsum = sum(s["median_ms"] for s in stages if s["pass"] == "forward")
    tsum = sum(s["median_ms"] for s in stages if s["in_sums"])
    row["forward_stage_sum_ms"] = round(fsum, 4)
    row["train_stage_sum_ms"] = round(tsum, 4)
    row["forward_sum_over_e2e"] = round(fsum / row["frame"]["median_ms"], 3)
    row["train_sum_over_e2e"] = round(tsum / row["train_step"]["median_ms"], 3)


def profile_batched(spec: dict, implementation: str, repeats: int) -> dict:
    """``render_cameras`` over ``B`` cameras against ``B`` single-camera calls."""
    size, n, b = spec["size"], spec["gaussians"], spec["cameras"]
    scene, K = _camera(size, size, n)
    c2ws = scenes.nearby_cameras(b)
    Ks = jnp.broadcast_to(K, (b, 3, 3))
    need = int(jnp.max(count_need(scene, c2ws, K, width=size, height=size)))
    capacity = capacity_for(need, n)
    kw = _settings(spec, implementation, capacity)
    print(f"profiling {spec['name']} {implementation} capacity={capacity}", flush=True)

    @jax.jit
    def batched(s, c2ws, Ks):
        out = render_lib.render_cameras(
            **s, c2ws=c2ws, Ks=Ks, width=size, height=size, **kw
        )
        return out.image, out.num_intersections, out.overflow

    single = jax.jit(lambda s, c2w, K: _frame_programs(c2w, K, size, size, kw)[0](s))
    poses = [(c2ws[i], Ks[i]) for i in range(b)]

    def loop(s):
        return [single(s, c2w, k) for c2w, k in poses]

    images, counts, overflow = batched(scene, c2ws, Ks)
    diff = max(
        float(jnp.max(jnp.abs(images[i] - out[0]))) for i, out in enumerate(loop(scene))
    )
    t_batch = _timed(batched, (scene, c2ws, Ks), repeats)
    t_loop = _timed(loop, (scene,), repeats)
    return dict(
        scene=spec["name"], implementation=implementation, gaussians=n, size=size,
        cameras=b, capacity=capacity, intersections=[int(c) for c in counts],
        overflow=[bool(o) for o in overflow], batched=t_batch, single_loop=t_loop,
        batched_per_camera_ms=round(t_batch["median_ms"] / b, 4),
        single_per_camera_ms=round(t_loop["median_ms"] / b, 4),
        speedup=round(t_loop["median_ms"] / t_batch["median_ms"], 3),
        max_difference_vs_single=diff,
    )  # fmt: skip


def _guarded(profile, spec: dict, impl: str, repeats: int) -> dict:
    """``profile(spec, impl, repeats)`` with its wall time, or its failure."""
    begin = time.perf_counter()
    try:
        row = profile(spec, impl, repeats)
    except Exception as e:  # noqa: BLE001 - one failing case must not end the run
        traceback.print_exc()
        failure = f"{type(e).__name__}: {e}"[:2000]
        row = dict(scene=spec["name"], implementation=impl, failed=failure)
    row["wall_s"] = round(time.perf_counter() - begin, 2)
    return row


def run(
    preset: str,
    repeats: int | None = None,
    out: pathlib.Path | None = None,
    cases: list[str] | None = None,
) -> dict:
    """Profiles the cases of ``preset`` in order; a strict-JSON dict.

    Args:
      preset: a key of :data:`PRESETS`.
      repeats: timed calls per measurement (default: the preset's; a case's
        ``max_repeats`` caps it).
      out: where to write the result so far after every case (optional).
      cases: names of the cases to run (default: all).

    A case that raises becomes a row with ``failed`` (the error) and the run
    goes on. Cases with ``cameras`` go to ``batched``, the others to ``rows``.
    """
    spec = PRESETS[preset]
    repeats = repeats or spec["repeats"]
    result = {
        "preset": preset,
        "repeats": repeats,
        "env": bench_util.bench_env(),
        "peak_hbm_bytes_per_s": bench_util.peak_hbm_bytes_per_s(),
        "stages": {"forward": stages_lib.FORWARD, "backward": stages_lib.BACKWARD},
        "rows": [],
        "batched": [],
        "notes": NOTES,
    }
    begin = time.perf_counter()
    for case in spec["cases"]:
        if cases and case["name"] not in cases:
            continue
        key, profile = "rows", profile_scene
        if "cameras" in case:
            key, profile = "batched", profile_batched
        for impl in case["implementations"]:
            n = min(repeats, case.get("max_repeats", repeats))
            result[key].append(_guarded(profile, case, impl, n))
            result["wall_s"] = round(time.perf_counter() - begin, 2)
            if out is not None:
                out.write_text(json.dumps(result, indent=1, allow_nan=False))
    return result


NOTES = [
    "Stages are jitted alone on stored inputs: no fusion across stage "
    "boundaries, every intermediate goes through memory; the stage sum is "
    "not the end-to-end time (sum_over_e2e column).",
    "A stage's median includes a host round trip per call (tens of us on a GPU); "
    "pipelined_ms (back-to-back calls, one sync) is closer to its device time.",
    "segment_sum is part of rasterize_vjp and left out of the sums.",
    "analytic_bytes: a stated lower estimate per stage (stages.analytic_cost); "
    "hbm_roofline_ms divides it by the spec-sheet HBM bandwidth; the sort's "
    "estimate assumes the two-key layout for both binnings.",
    "peak_memory_bytes is the device's peak since start-up, so it only grows "
    "from row to row.",
    "Pallas on CPU runs in the interpreter: its timings mean nothing there.",
]


def _table(rows: list[dict], columns: list[str]) -> str:
    blank = [{k: "" if v is None else v for k, v in r.items()} for r in rows]
    return tables.markdown_table(blank, columns)


def _mb(n: int | None) -> float | None:
    return None if n is None else round(n / 2**20, 2)


def _summary(r: dict) -> dict:
    f, t, fm, tm = r["frame"], r["train_step"], r["frame_memory"], r["train_memory"]
    return dict(
        scene=r["scene"], impl=r["implementation"], N=r["gaussians"],
        image=f"{r['width']}x{r['height']}", intersections=r["intersections"],
        capacity=r["capacity"], overflow=r["overflow"], frame_ms=f["median_ms"],
        frame_p10_p90=f"{f['p10_ms']:.4g}-{f['p90_ms']:.4g}",
        fwd_stage_sum_ms=r["forward_stage_sum_ms"],
        fwd_sum_over_e2e=r["forward_sum_over_e2e"], train_ms=t["median_ms"],
        train_p10_p90=f"{t['p10_ms']:.4g}-{t['p90_ms']:.4g}",
        train_stage_sum_ms=r["train_stage_sum_ms"],
        train_sum_over_e2e=r["train_sum_over_e2e"], max_error=r["max_error"],
        error_ok=r["error_ok"], frame_temp_mb=_mb((fm or {}).get("temp_bytes")),
        train_temp_mb=_mb((tm or {}).get("temp_bytes")),
        peak_mb=_mb(r["peak_memory_bytes"]),
    )  # fmt: skip


def markdown(result: dict) -> str:
    """The frame and training-step table, one stage table per row, batches."""
    ok = [r for r in result["rows"] if "failed" not in r]
    out = ["## Frame and training step (medians; stage sums unfused)\n"]
    out.append(_table([_summary(r) for r in ok], list(_summary(ok[0]))) if ok else "")
    cols = ["stage", "pass", "median_ms", "p10_ms", "p90_ms", "pipelined_ms"]
    cols += ["share_of_forward_sum"]
    cols += ["share_of_train_sum", "in_sums", "est_mb", "hbm_roofline_ms"]
    for r in ok:
        rows = [
            dict(s, **(s["timing"] or {}), est_mb=_mb(s["analytic_bytes"]))
            for s in r["stages"]
        ]
        out += [f"\n### Stages: {r['scene']} / {r['implementation']}\n"]
        out.append(_table(rows, cols))
    batched = [
        dict(b, **{f"{k}_ms": b[k]["median_ms"] for k in ("batched", "single_loop")})
        for b in result["batched"]
        if "failed" not in b
    ]
    cols = ["scene", "implementation", "cameras", "capacity", "overflow"]
    cols += ["batched_ms", "single_loop_ms", "batched_per_camera_ms"]
    cols += ["single_per_camera_ms", "speedup", "max_difference_vs_single"]
    out += ["\n## Batched cameras\n", _table(batched, cols), ""]
    out += [f"- {n}" for n in NOTES]
    failed = [r for r in result["rows"] + result["batched"] if "failed" in r]
    out += [
        f"- FAILED {r['scene']} / {r['implementation']}: {r['failed']}" for r in failed
    ]
    return "\n".join(out)


def define_flags() -> None:
    """The command line's flags, defined when run as a script (not on import).

    The exit status is 1 when a case failed or rendered wrong (``error_ok``).
    """
    flags.DEFINE_enum("preset", "tiny", list(PRESETS), "Scenes to profile.")
    flags.DEFINE_integer("repeats", None, "Timed calls (default: the preset's).")
    flags.DEFINE_list("cases", [], "Cases of the preset to run (default: all).")
    flags.DEFINE_string(
        "out", None, "JSON file, or a folder for splat_profile_<backend>.json."
    )


def main(argv) -> int:
    del argv
    args = flags.FLAGS
    out = pathlib.Path(args.out or pathlib.Path(__file__).parent / "results")
    if out.suffix != ".json":
        out = out / f"splat_profile_{jax.default_backend()}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    result = run(args.preset, args.repeats, out, args.cases)
    print(markdown(result))
    print("wrote", out)
    cases = result["rows"] + result["batched"]
    bad = [c for c in cases if "failed" in c or not c.get("error_ok", True)]
    return 1 if bad else 0


if __name__ == "__main__":
    define_flags()
    app.run(main)
