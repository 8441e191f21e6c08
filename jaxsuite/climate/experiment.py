"""The blocking experiment: QG runs, onsets, CNN skill, attributions, transfer.

Run with::

    python -m launch.blocking --config=configs/blocking.py:smoke --workdir=runs/blocking

Stages (each resumable from ``workdir``): (1) ensemble runs of the *source*
configuration (the MM93/pyshqg T21 model) and of a *target* configuration
with structural differences (stronger Ekman drag, a smaller second Rossby
radius, different hyperdiffusion; a perfect-model stand-in for reanalysis,
never called ERA5), checkpointed per chunk; (2) blocking statistics and
labelled Atlantic onsets; (3) the source CNN over several seeds with
bootstrap CIs; (4) expected gradients vs shap's PermutationExplainer on
superpixels and a sparse logistic model on the top-k% pixels; (5) transfer to
the target at reanalysis-like sizes: direct training, zero-shot, head-only
and full fine-tuning; (6) figures and ``results.json``.

``config`` (``configs/blocking.py``) is read once into ``settings.Settings``;
the phases live in ``stages`` (runs, onset data), ``training`` (CNN fits),
``evaluation`` (skill, attributions, maps) and ``report`` (figures, metrics,
verdict, tables); ``run`` only wires them.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

import jax
import numpy as np
from absl import logging

from jaxsuite.climate import blocking, data, evaluation, plots, report, stages, training
from jaxsuite.climate.settings import Settings, from_config
from jaxsuite.core import metrics as metrics_lib
from jaxsuite.core import train as train_lib


def _learn_and_explain(
    s: Settings,
    d: stages.OnsetData,
    workdir: str,
    writer: metrics_lib.MetricWriter,
    t_start: float,
) -> dict[str, Any]:
    """Phases 3-5: source CNNs, attributions, sparse models, transfer and maps.

    Returns ``report.Outcome``'s fields from ``source`` to ``map_corr``.
    """
    rng = np.random.default_rng(s.seed)  # the split, then the random pixels
    fit = training.train_source(s.learn, d, workdir, rng)
    skill = evaluation.source_skill(s.learn, d, fit)
    writer.write_scalars(0, {f"source_{k}": v["mean"] for k, v in skill.items()})
    logging.info("stage done: source CNNs at %.1f s", time.time() - t_start)
    key = jax.random.PRNGKey(s.seed)
    logit_src = evaluation.logit_map_fn(fit.models[0])
    attr = evaluation.attributions(s.explain, d, fit, logit_src, key, s.seed)
    sparse, sparse_all = evaluation.sparse_models(
        s.explain, d, fit, attr.importance, skill["auc"]["mean"], rng
    )
    logging.info("stage done: attributions at %.1f s", time.time() - t_start)
    fits = training.train_transfer(s.learn, d, fit.models, workdir)
    rows = evaluation.transfer_rows(s.learn, d, fits, fit.base_rate)
    for r in rows:
        writer.write_scalars(r["n_train"], {f"{r['regime']}_auc": r["auc_mean"]})
    plots.skill_vs_size(os.path.join(workdir, "skill_vs_target_size.png"), rows)
    logging.info("stage done: transfer at %.1f s", time.time() - t_start)
    n_max = list(fits)[-1]  # SHAP maps before and after transfer (seed 0)
    fine = training.load_fit(workdir, f"fine_{n_max}_0", d)
    before, after, corr = evaluation.transfer_maps(
        s.explain, d, logit_src, evaluation.logit_map_fn(fine), key
    )
    path = os.path.join(workdir, "shap_maps.png")
    report.attribution_figure(path, attr.map_src, before, after, n_max, d.lat_in, d.lon)
    return dict(
        source=fit,
        source_skill=skill,
        rho=attr.rho,
        block=s.explain.block,
        sparse=sparse,
        sparse_all=sparse_all,
        transfer=rows,
        sizes=list(fits),
        map_corr=corr,
    )


def run(config: Any, workdir: str) -> dict[str, Any]:
    """Runs every stage and writes ``results.json``; returns the results dict.

    ``config`` (``configs/blocking.py``) is read once into the typed
    settings (``settings.from_config``); it is kept only to prepare
    ``workdir`` and to be echoed into the hyperparameters and results.
    """
    t_start = time.time()
    s = from_config(config)
    train_lib.prepare_workdir(workdir, config)
    writer = metrics_lib.MetricWriter(workdir)
    writer.write_hparams(config.to_dict())
    sph = data.default_model().sphere
    lat, lon = sph.lat, sph.lon
    # 1. Model runs.
    z_src, rate_src = stages.simulate(s.source, "source", workdir, s.seed)
    z_tgt, rate_tgt = stages.simulate(s.target, "target", workdir, s.seed + 1)
    logging.info("runs done: %.1f / %.1f member-days/s", rate_src, rate_tgt)
    # 2. Blocking statistics and onsets.
    fields = {"source": z_src, "target": z_tgt}
    stats = {
        k: blocking.event_statistics(z, lat, lon, s.onset) for k, z in fields.items()
    }
    path = os.path.join(workdir, "blocking_frequency.png")
    report.blocking_frequency_figure(path, fields, lat, lon, s.onset)
    d = stages.onset_data(s, z_src, z_tgt, lat, lon)
    # 3-5. CNNs, attributions and transfer.
    learned = _learn_and_explain(s, d, workdir, writer, t_start)
    writer.close()
    logging.info("stage done: maps at %.1f s", time.time() - t_start)
    # 6. Results.
    o = report.Outcome(
        stats=stats, data=d, tput=report.throughput(s, rate_src, rate_tgt), **learned
    )
    path = metrics_lib.write_results(
        workdir,
        paper="blocking",
        config=config,
        metrics=report.metrics(o),
        tables=report.tables(o),
        claim=report.CLAIM,
        verdict=report.verdict(o),
        wall_seconds=time.time() - t_start,
    )
    with open(os.path.join(workdir, "transfer_rows.json"), "w") as f:
        json.dump(o.transfer, f, indent=1)
    return metrics_lib.read_results(path)
