"""Deblurring-3DGS ablation: the MLP settings and the scene, one at a time.

Runs the Deblurring-3DGS experiment (``jaxsuite.splat.experiment.run``) on a
preset with a few overrides each and collects sharp-test-view PSNR and SSIM.
The ``small`` preset itself is the baseline (its table is in README.md); it
departs from the official code in the defocus MLP (head bias 1.2, scale
weight 0.1, clamp 2, no rotation factors, factors relative to their smallest
over the training views) and in centring the camera-motion offsets. Each
setting undoes one of those, or changes the scene:

* ``defocus_code``: defocus with the code's MLP settings.
* ``defocus_absolute``: the small preset's defocus MLP with the code's
  absolute factors.
* ``motion_code``: camera motion with the code's uncentred offsets.
* ``defocus_open_wall``: a back wall that stops inside the frame, with white
  background above and below it, and the ``thin_lens`` control (the defocus
  transform with the exact circle-of-confusion factors instead of the MLP).
* ``seed_1``: defocus on the small preset with another seed (focus depths,
  initial points and the MLP's initialisation), 3DGS and Deblurring-3DGS.
* ``motion_seed_1``: camera motion with another seed (blur paths, initial
  points and the MLP's initialisation).
* ``known_blur``: the small preset with the known-blur control (training
  through 4 of each view's true blur sub-cameras per step) on both blur
  types; its 3DGS and Deblurring-3DGS rows repeat the small run's.

    python benchmarks/deblur_ablation.py --workdir=runs/deblur_ablation

About 100 minutes on 2 CPU cores (``known_blur`` alone 46). Writes
``benchmarks/results/deblur3dgs_ablation.json`` (with ``--settings=a,b`` only
those settings are rerun; the file keeps the other settings' rows from an
earlier run of the same preset) and prints a table.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import pathlib
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]

SETTINGS = {
    "defocus_code": {
        "blur_types": ("defocus",),
        "methods": ("vanilla", "deblur"),
        "lambda_s": 0.01,
        "max_clamp": 1.1,
        "mlp_scale_bias": 0.0,
        "mlp_rotation_factors": True,
        "mlp_relative_factors": False,
    },
    "defocus_absolute": {
        "blur_types": ("defocus",),
        "methods": ("vanilla", "deblur"),
        "mlp_relative_factors": False,
    },
    "motion_code": {
        "blur_types": ("motion",),
        "methods": ("vanilla", "deblur"),
        "mlp_center_offsets": False,
    },
    "defocus_open_wall": {
        "blur_types": ("defocus",),
        "methods": ("vanilla", "deblur", "thin_lens"),
        "wall_half": (2.0, 1.6),
    },
    "seed_1": {
        "blur_types": ("defocus",),
        "methods": ("vanilla", "deblur"),
        "seed": 1,
    },
    "motion_seed_1": {
        "blur_types": ("motion",),
        "methods": ("vanilla", "deblur"),
        "seed": 1,
    },
    "known_blur": {
        "blur_types": ("defocus", "motion"),
        "methods": ("vanilla", "deblur", "known_blur"),
    },
}


def _get_config(arg: str):
    path = ROOT / "configs" / "deblur3dgs.py"
    spec = importlib.util.spec_from_file_location("cfg_deblur3dgs", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config(arg)


def run_setting(name: str, preset: str, workdir: str) -> list[dict]:
    """Runs one setting; returns a row per (blur, method) with its overrides."""
    from jaxsuite.splat import experiment

    overrides = SETTINGS[name]
    config = _get_config(preset)
    with config.unlocked():
        config.update(overrides)
        config.lpips = False
    results = experiment.run(config, os.path.join(workdir, name))
    m = results["metrics"]
    rows = []
    for blur in config.blur_types:
        for method in experiment.methods_for(config, blur):
            psnr = m[f"{blur}/{method}/psnr"]["value"]
            rows.append(
                {
                    "setting": name,
                    "blur": blur,
                    "method": method,
                    "psnr": round(psnr, 3),
                    "ssim": round(m[f"{blur}/{method}/ssim"]["value"], 4),
                    "gain_over_3dgs": round(
                        psnr - m[f"{blur}/vanilla/psnr"]["value"], 3
                    ),
                    "blurry_input_psnr": round(
                        m[f"{blur}/blurry_input_psnr"]["value"], 3
                    ),
                    "overrides": {k: v for k, v in overrides.items() if k != "methods"},
                }
            )
    return rows


def kept_results(
    previous: dict | None, preset: str, names: list[str]
) -> tuple[dict, list[dict]]:
    """``(seconds, rows)`` of an earlier output that a rerun of ``names`` keeps.

    Only an output of the same preset is kept from, and without the settings
    being rerun.
    """
    if not previous or previous.get("preset") != preset:
        return {}, []
    seconds = {k: v for k, v in previous.get("seconds", {}).items() if k not in names}
    rows = [r for r in previous["rows"] if r["setting"] not in names]
    return seconds, rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workdir", default="runs/deblur_ablation")
    parser.add_argument("--preset", default="small")
    parser.add_argument("--settings", default=",".join(SETTINGS))
    parser.add_argument(
        "--out", default=str(ROOT / "benchmarks/results/deblur3dgs_ablation.json")
    )
    args = parser.parse_args()
    from absl import logging

    logging.set_verbosity(logging.INFO)  # the training loop's progress lines
    names = [s for s in args.settings.split(",") if s]
    unknown = sorted(set(names) - set(SETTINGS))
    if unknown:
        parser.error(f"unknown settings {unknown}; choose from {list(SETTINGS)}")
    previous = None
    if os.path.exists(args.out):
        with open(args.out) as f:
            previous = json.load(f)
    seconds, rows = kept_results(previous, args.preset, names)
    t0 = time.time()
    for name in names:
        t1 = time.time()
        rows += run_setting(name, args.preset, args.workdir)
        seconds[name] = round(time.time() - t1, 1)
        print(f"{name} done at {time.time() - t0:.0f} s", flush=True)
    import jax

    order = {name: i for i, name in enumerate(SETTINGS)}
    rows.sort(key=lambda r: order.get(r["setting"], len(order)))
    out = {
        "preset": args.preset,
        "backend": jax.default_backend(),
        "seconds": seconds,
        "rows": rows,
    }
    pathlib.Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(out, f, indent=2)
    print("| setting | blur | method | PSNR (dB) | SSIM | vs 3DGS (dB) |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['setting']} | {r['blur']} | {r['method']} | {r['psnr']:.2f} "
            f"| {r['ssim']:.3f} | {r['gain_over_3dgs']:+.2f} |"
        )


if __name__ == "__main__":
    main()
