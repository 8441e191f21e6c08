"""Where the hash encoding's time goes: launch sweep, backward variants, stages.

One run answers three questions for the Pallas hash-encoding kernel:

1. Forward launch options: ``block_size`` x ``num_warps`` x
   ``levels_per_program``, forward only, at the largest size.
2. Table-gradient variants (``sort``, ``atomic``, ``split_sort``,
   ``split_atomic``) at the best forward setting, forward+backward, beside the
   XLA reference timed in the same run (the anchor of every speed-up column).
3. The backward's stages for the sort-based variants (corner kernel, keys and
   contributions, stable sort, segmented scan, scatter), each timed on
   materialised inputs; their shares and sum sit beside the end-to-end time.

Every row also carries an analytic cost model (``cost_model``) and the max
abs error of the features and gradients against the reference, so a run that
times a wrong kernel shows it. Points come from two distributions with fixed
seeds: ``uniform`` in ``[0, 1]^3`` and ``rays`` (NeRF-like: ``N/128`` random
rays through the unit cube, 128 ordered samples along each, rays contiguous
in the batch, as in a NeRF training batch).

    python benchmarks/hash_profile.py --preset=gpu      # one H200: ~4 minutes
    python benchmarks/hash_profile.py --preset=tiny     # CPU, interpreted

Writes ``benchmarks/results/hash_profile_<backend>.json`` and prints markdown
tables.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import json
import pathlib

import bench_util
import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags
from jaxsuite.kernels.hash_encoding import HashEncodingConfig, hash_encode
from jaxsuite.kernels.hash_encoding import pallas as hp
from jaxsuite.kernels.hash_encoding.cost import cost_model

BACKWARDS = ("sort", "atomic", "split_sort", "split_atomic")
STAGED = ("sort", "split_sort")  # variants whose backward is split into stages
DISTRIBUTIONS = ("uniform", "rays")
SAMPLES_PER_RAY = 128


@dataclasses.dataclass(frozen=True)
class Preset:
    """Sizes and sweep of one profile run.

    ``sweep`` is ``(block sizes, warps, levels per program)``, crossed, for
    the forward at the largest size.
    """

    config_name: str
    config: HashEncodingConfig
    sizes: tuple[int, ...]
    interpret: bool
    repeats: int
    sweep: tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]


# tiny: 4 levels (res 4 and 8 dense, 16 and 32 hashed), every backward path.
_TINY = HashEncodingConfig(4, 2, log2_table_size=10, base_resolution=4)
# gpu: Instant-NGP's NeRF grid, as in benchmarks/hash_encoding.py.
_NGP = HashEncodingConfig(16, 2, log2_table_size=19, max_resolution=2048)
_GPU_SWEEP = ((128, 256, 512), (2, 4, 8), (1, 2))
PRESETS = {
    "tiny": Preset("L4_F2_T2^10", _TINY, (4096,), True, 1, ((256,), (4,), (1, 2))),
    "gpu": Preset("L16_F2_T2^19", _NGP, (2**18, 2**20), False, 10, _GPU_SWEEP),
}


def points(distribution: str, n: int, seed: int = 0) -> np.ndarray:
    """``(n, 3)`` float32 points in ``[0, 1]^3``.

    ``uniform``: i.i.d. uniform. ``rays``: ``n / 128`` lines through two
    uniform points of the cube, clipped to the cube, with 128 evenly spaced,
    ordered samples each; ray ``r``'s samples are rows ``128 r .. 128 r + 127``.
    """
    rng = np.random.default_rng(seed)
    if distribution == "uniform":
        return rng.random((n, 3), dtype=np.float32)
    if distribution != "rays" or n % SAMPLES_PER_RAY:
        raise ValueError(f"bad distribution {distribution!r} or n={n}")
    a, b = rng.random((2, n // SAMPLES_PER_RAY, 3))
    d = b - a
    d = np.where(np.abs(d) < 1e-9, 1e-9, d)
    t0, t1 = (0.0 - a) / d, (1.0 - a) / d
    t_in = np.minimum(t0, t1).max(axis=1, keepdims=True)  # <= 0: a is inside
    t_out = np.maximum(t0, t1).min(axis=1, keepdims=True)  # >= 1: so is b
    s = (np.arange(SAMPLES_PER_RAY) + 0.5) / SAMPLES_PER_RAY
    t = t_in + (t_out - t_in) * s[None, :]  # (rays, 128)
    x = a[:, None, :] + t[..., None] * d[:, None, :]
    return np.clip(x, 0.0, 1.0).reshape(n, 3).astype(np.float32)


def _errors(got, want) -> dict:
    """Max abs error and the reference's max magnitude of each output."""
    names = ("values", "dx", "dtable")
    err, scale = {}, {}
    for name, g, w in zip(names, got, want):
        err[name] = float(jnp.max(jnp.abs(g.astype(jnp.float32) - w)))
        scale[name] = float(jnp.max(jnp.abs(w)))
    return dict(max_abs_err=err, ref_max_abs=scale)


def _encoders(config, interpret: bool, knobs: dict, backward: str | None):
    """Jitted ``(forward, forward_backward)`` of one implementation (cached)."""
    if backward == "reference":
        return _jitted(config, (("implementation", "reference"),))
    kw = dict(implementation="pallas", interpret=interpret, **knobs)
    if backward is not None:
        kw["backward"] = backward
    return _jitted(config, tuple(sorted(kw.items())))


@functools.cache
def _jitted(config, kw: tuple):
    encode = functools.partial(hash_encode, config=config, **dict(kw))

    def fwd_bwd(x, table, ct):
        out, pull = jax.vjp(encode, x, table)
        return (out, *pull(ct))

    return jax.jit(encode), jax.jit(fwd_bwd)


def _inputs(config, n: int, distribution: str) -> tuple[jax.Array, ...]:
    """``(x (N, 3), table (L, T, F), cotangent (N, L*F))`` with fixed seeds."""
    x = jnp.asarray(points(distribution, n))
    kt, kc = jax.random.split(jax.random.key(1))
    shape = (config.num_levels, config.hashmap_size, config.features_per_level)
    table = jax.random.normal(kt, shape)
    ct = jax.random.normal(kc, (n, config.output_dim))
    return x, table, ct


def _row(preset, n, dist, variant, pass_, stats, knobs=None, backward=None):
    """One timing row with its cost model and roofline fraction."""
    cost = cost_model(preset.config, n, pass_, backward)
    peak, median = bench_util.peak_hbm_bytes_per_s(), stats["median_s"]
    roof = lambda b: None if peak is None else b / median / peak
    return dict(
        config=preset.config_name,
        distribution=dist,
        num_points=n,
        variant=variant,
        backward=backward,
        knobs=knobs,
        timing=stats,
        **{"pass": pass_},
        points_per_s=n / median,
        cost=cost,
        roofline_fraction=roof(cost["hbm_bytes"]),
        roofline_fraction_with_sort=roof(cost["hbm_bytes"] + cost["sort_bytes"]),
    )


def _knob_grid(p: Preset) -> list[dict]:
    grid = itertools.product(*p.sweep)
    names = ("block_size", "num_warps", "levels_per_program")
    return [dict(zip(names, k)) for k in grid if p.config.num_levels % k[2] == 0]


def forward_sweep(preset: Preset, data: dict, reference: dict) -> list[dict]:
    """Forward rows of every launch setting at the largest size."""
    n = max(preset.sizes)
    rows = []
    for knobs in _knob_grid(preset):
        fwd, _ = _encoders(preset.config, preset.interpret, knobs, None)
        for dist in DISTRIBUTIONS:
            x, table, _ = data[n, dist]
            try:
                stats = bench_util.time_stats(fwd, (x, table), preset.repeats)
                out = fwd(x, table)
            except Exception as e:  # a launch setting that fails to compile
                rows.append(_failed(n, dist, "pallas", "forward", knobs, None, e))
                continue
            row = _row(preset, n, dist, "pallas", "forward", stats, knobs)
            want = reference[n, dist][0]
            row["max_abs_err"] = {"values": float(jnp.max(jnp.abs(out - want)))}
            row["ref_max_abs"] = {"values": float(jnp.max(jnp.abs(want)))}
            rows.append(row)
            _progress(row)
    return rows


def _failed(n, dist, variant, pass_, knobs, backward, error) -> dict:
    """A row for a measurement that raised (kept, so one failure costs one row)."""
    row = dict(num_points=n, distribution=dist, variant=variant, backward=backward)
    row.update(knobs=knobs, error=f"{type(error).__name__}: {error}"[:800])
    row["pass"] = pass_
    print(f"  FAILED {row}", flush=True)
    return row


def _progress(row: dict) -> None:
    print(
        f"  {row['num_points']:>8d} {row['distribution']:8s} {row['variant']:9s} "
        f"{row['backward'] or '-':12s} {row['pass']:16s} {row['knobs']} "
        f"{row['timing']['median_s'] * 1e3:9.3f} ms "
        f"(first {row['timing']['first_s']:.1f} s)",
        flush=True,
    )


def best_knobs(sweep: list[dict]) -> dict:
    """Knobs with the smallest forward median summed over distributions."""
    total: dict[tuple, float] = {}
    for r in sweep:
        if "error" in r:
            continue
        key = tuple(sorted(r["knobs"].items()))
        total[key] = total.get(key, 0.0) + r["timing"]["median_s"]
    return dict(min(total, key=total.get))


def variant_rows(preset: Preset, data: dict, reference: dict, knobs: dict):
    """Reference and every backward variant, forward and forward+backward."""
    rows = []
    impls = [("reference", "reference")] + [("pallas", b) for b in BACKWARDS]
    for variant, backward in impls:
        fwd, fwd_bwd = _encoders(
            preset.config,
            preset.interpret,
            knobs,
            None if backward == "sort" else backward,
        )
        kn = None if variant == "reference" else knobs
        for n, dist in data:
            x, table, ct = data[n, dist]
            passes = [("forward_backward", fwd_bwd, (x, table, ct))]
            if backward in ("reference", "sort"):  # the forward is shared
                passes.insert(0, ("forward", fwd, (x, table)))
            try:  # timing first, so that first_s includes the compile
                timed = [
                    (pass_, bench_util.time_stats(fn, args, preset.repeats))
                    for pass_, fn, args in passes
                ]
                errors = _errors(fwd_bwd(x, table, ct), reference[n, dist])
            except Exception as e:  # keep the other variants' rows
                rows.append(_failed(n, dist, variant, passes[-1][0], kn, backward, e))
                continue
            for pass_, stats in timed:
                bw = None if pass_ == "forward" else backward
                row = _row(preset, n, dist, variant, pass_, stats, kn, bw)
                if pass_ == "forward":
                    row.update({k: {"values": v["values"]} for k, v in errors.items()})
                else:
                    row.update(errors)
                rows.append(row)
                _progress(row)
    anchor = {
        (r["num_points"], r["distribution"], r["pass"]): r["timing"]["median_s"]
        for r in rows
        if r["variant"] == "reference"
    }
    for r in rows:
        if "error" not in r:
            ref = anchor[r["num_points"], r["distribution"], r["pass"]]
            r["speedup_vs_reference"] = ref / r["timing"]["median_s"]
    return rows


def _stage_fns(preset: Preset, opts, start: int, stop: int, method: str):
    """Jitted stage functions of one level run of the backward.

    Returns ``(corner, g_run, prep, scatter)``: the corner kernel
    ``(xt, table, g) -> (dx, rows, weights)``; the run's cotangent columns
    ``g -> g_run``; ``[(name, fn(rows, weights, g_run))]`` whose last entry
    gives ``(keys, values)``; ``scatter(sorted_keys, last, sums) -> dtable``.
    """
    cfg, t = preset.config, preset.config.hashmap_size
    f = cfg.features_per_level
    lp = cfg.levels()
    res, size = lp.resolution[start:stop], lp.size[start:stop]
    corner = jax.jit(
        lambda xt, table, g: hp.corner_kernel(xt, table, g, cfg, opts, (start, stop))
    )
    g_run = jax.jit(lambda g: g[:, start * f : stop * f])
    if method == "sort":
        prep = [("contributions", lambda r, w, g: hp.table_contributions(r, w, g, t))]
        scatter = lambda k, last, s: hp.scatter_segments(k, last, s, (stop - start) * t)
    else:
        prep = [
            ("check", lambda r, w, g: hp.dense_regular(r, res, size)),
            (
                "contributions",
                lambda r, w, g: (hp.dense_keys(r, t), hp.dense_contributions(w, g)),
            ),
        ]
        scatter = lambda k, last, s: hp.scatter_dense_corners(k, last, s, t, res, size)
    return corner, g_run, [(n, jax.jit(fn)) for n, fn in prep], jax.jit(scatter)


def stage_rows(preset: Preset, data: dict, knobs: dict, e2e: dict) -> list[dict]:
    """Per-stage times of the sort-based backwards on materialised inputs."""
    opts = hp.PallasOptions(interpret=preset.interpret, **knobs)
    sort, scan = jax.jit(hp.sort_pairs), jax.jit(hp.segmented_scan)
    time = lambda fn, *args: bench_util.time_stats(fn, args, preset.repeats)
    out = []
    for backward in STAGED:
        runs = [
            (f"{method}[{start}:{stop}]", _stage_fns(preset, opts, start, stop, method))
            for start, stop, method in hp.level_runs(preset.config, backward)
        ]
        for (n, dist), (x, table, ct) in data.items():
            xt = hp.pad_points(x, opts.block_size)
            g = hp.pad_cotangent(ct, opts.block_size)
            try:
                stages = _time_stages(runs, xt, table, g, time, sort, scan)
            except Exception as e:  # keep the other variants' stages
                out.append(_failed(n, dist, "pallas", "stages", knobs, backward, e))
                continue
            total = sum(s["median_s"] for _, s in stages)
            fb = e2e.get((n, dist, backward))
            fwd = e2e.get((n, dist, "forward"))
            row = dict(backward=backward, num_points=n, distribution=dist, knobs=knobs)
            row["stages"] = [
                dict(stage=name, timing=s, share=s["median_s"] / total)
                for name, s in stages
            ]
            row.update(stage_sum_s=total, forward_backward_s=fb)
            row["backward_s"] = None if None in (fb, fwd) else fb - fwd
            out.append(row)
            print(f"  stages {backward} {n} {dist}: {total * 1e3:.3f} ms", flush=True)
    return out


def _time_stages(runs, xt, table, g, time, sort, scan) -> list[tuple[str, dict]]:
    """``[(stage name, time_stats)]`` of every stage of every level run."""
    stages = []
    for tag, (corner, g_run, prep, scatter) in runs:
        stages.append((f"{tag}.corner_kernel", time(corner, xt, table, g)))
        _, rows_, weights = corner(xt, table, g)
        gr = g_run(g)
        for name, fn in prep:
            stages.append((f"{tag}.{name}", time(fn, rows_, weights, gr)))
        keys, values = prep[-1][1](rows_, weights, gr)
        stages.append((f"{tag}.sort", time(sort, keys, values)))
        sorted_keys, sorted_values = sort(keys, values)
        stages.append((f"{tag}.scan", time(scan, sorted_keys, sorted_values)))
        sums, last = scan(sorted_keys, sorted_values)
        stages.append((f"{tag}.scatter", time(scatter, sorted_keys, last, sums)))
    return stages


def run(preset: str, repeats: int | None = None) -> dict:
    """Runs one preset; returns the JSON-ready result (see module docstring)."""
    p = PRESETS[preset]
    if repeats is not None:
        p = dataclasses.replace(p, repeats=repeats)
    data = {
        (n, dist): _inputs(p.config, n, dist) for n in p.sizes for dist in DISTRIBUTIONS
    }
    _, ref_fb = _encoders(p.config, p.interpret, {}, "reference")
    reference = {k: ref_fb(*v) for k, v in data.items()}
    sweep = forward_sweep(p, data, reference)
    knobs = best_knobs(sweep)
    variants = variant_rows(p, data, reference, knobs)
    e2e = {}
    for r in variants:
        if r["variant"] == "pallas" and "error" not in r:
            key = "forward" if r["pass"] == "forward" else r["backward"]
            e2e[r["num_points"], r["distribution"], key] = r["timing"]["median_s"]
    stages = stage_rows(p, data, knobs, e2e)
    return dict(
        benchmark="hash_profile",
        preset=preset,
        env=bench_util.bench_env(),
        peak_hbm_bytes_per_s=bench_util.peak_hbm_bytes_per_s(),
        config={p.config_name: str(p.config)},
        repeats=p.repeats,
        best_forward_knobs=knobs,
        forward_sweep=sweep,
        variants=variants,
        stages=stages,
    )


def _ms(stats: dict) -> str:
    return (
        f"{stats['median_s'] * 1e3:.3f} "
        f"({stats['p10_s'] * 1e3:.3f}-{stats['p90_s'] * 1e3:.3f})"
    )


def _fmt(value: float | None, spec: str = ".2f", scale: float = 1.0) -> str:
    return "-" if value is None else f"{value * scale:{spec}}"


def _table(head: str, cells: list[list]) -> list[str]:
    """Markdown table lines: ``head`` is ``'a | b | c'``."""
    lines = [f"| {head} |", "|" + "---|" * (head.count("|") + 1)]
    return lines + ["| " + " | ".join(map(str, c)) + " |" for c in cells]


def markdown(result: dict) -> str:
    """Markdown tables of a ``run`` result: sweep, variants, stages, failures."""
    ok = lambda rows: [r for r in rows if "error" not in r]
    err = lambda r: " / ".join(f"{v:.1e}" for v in r["max_abs_err"].values())
    mpts = lambda r: f"{r['points_per_s'] / 1e6:.1f}"
    lines = ["Forward launch sweep (ms: median (p10-p90)):", ""]
    lines += _table(
        "block | warps | levels/program | distribution | N | ms | M points/s "
        "| HBM roofline | max err",
        [
            [*r["knobs"].values(), r["distribution"], r["num_points"]]
            + [_ms(r["timing"]), mpts(r), _fmt(r["roofline_fraction"]), err(r)]
            for r in ok(result["forward_sweep"])
        ],
    )
    lines += ["", f"Variants at {result['best_forward_knobs']} (max err: values "]
    lines[-1] += "/ dx / dtable; roofline: compulsory bytes, then with the sort's):"
    lines += [""] + _table(
        "N | distribution | variant | backward | pass | ms | M points/s "
        "| x reference | HBM roofline | max err",
        [
            [r["num_points"], r["distribution"], r["variant"], r["backward"] or "-"]
            + [r["pass"], _ms(r["timing"]), mpts(r)]
            + [_fmt(r["speedup_vs_reference"])]
            + [
                f"{_fmt(r['roofline_fraction'])} "
                f"({_fmt(r['roofline_fraction_with_sort'])})",
                err(r),
            ]
            for r in ok(result["variants"])
        ],
    )
    for st in ok(result["stages"]):
        lines += [
            "",
            f"Backward stages, {st['backward']}, N={st['num_points']}, "
            f"{st['distribution']}: sum {_fmt(st['stage_sum_s'], '.3f', 1e3)} ms; "
            f"end to end backward {_fmt(st['backward_s'], '.3f', 1e3)} ms "
            f"(forward+backward {_fmt(st['forward_backward_s'], '.3f', 1e3)} ms)",
            "",
        ]
        lines += _table(
            "stage | ms | share",
            [[x["stage"], _ms(x["timing"]), _fmt(x["share"])] for x in st["stages"]],
        )
    for r in result["forward_sweep"] + result["variants"] + result["stages"]:
        if "error" in r:
            lines += ["", f"FAILED {r['backward']} {r['pass']} {r['knobs']} "]
            lines[-1] += f"N={r['num_points']} {r['distribution']}: {r['error']}"
    return "\n".join(lines)


def _define_flags() -> None:
    """Command-line flags, defined only when run as a script, so that importing
    this module never clashes with another script's flags."""
    flags.DEFINE_enum("preset", "gpu", list(PRESETS), "Sizes and sweep.")
    flags.DEFINE_integer("repeats", None, "Timed calls (default: preset's).")
    flags.DEFINE_string("out", None, "JSON path (default: results/).")


def main(argv) -> None:
    del argv
    fl = flags.FLAGS
    backend = jax.default_backend()
    print(f"backend={backend} device={jax.devices()[0].device_kind}")
    result = run(fl.preset, fl.repeats)
    default = f"hash_profile_{backend}.json"
    out = pathlib.Path(fl.out or pathlib.Path(__file__).parent / "results" / default)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1, allow_nan=False) + "\n")
    print(markdown(result))
    print(f"wrote {out}")


if __name__ == "__main__":
    _define_flags()
    app.run(main)
