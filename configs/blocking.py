"""Config for the Atlantic-blocking experiment; see ``jaxsuite.climate.experiment``.

Source: the MM93 T21 model with pyshqg's parameters and forcing. Target: the
same equations with structural changes (Ekman drag 1.5 d instead of 3 d,
second Rossby radius 400 km instead of 450 km, hyperdiffusion time 0.2 d
instead of 0.1 d), a model configuration standing in for reanalysis.
``small`` shrinks the run lengths and training steps (sized from measured
throughput to fit 30 min on 2 cores), never the method's settings.
"""

import ml_collections

from jaxsuite.core import config as config_lib


def _model(members, days, **kw):
    c = ml_collections.ConfigDict()
    c.members = members
    c.test_members = 2
    c.spinup_days = 60
    c.days = days
    c.chunk_days = 50
    c.dtype = "float32"
    c.dt = 1800.0
    c.tau_ekman_days = 3.0
    c.rossby_radius_1_km = 700.0
    c.rossby_radius_2_km = 450.0
    c.tau_selective_s = 8640.0
    c.tau_thermal_days = 25.0
    c.update(kw)
    return c


def _base() -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    config.seed = 0
    config.source = _model(8, 1200)
    config.target = _model(
        8, 1000, tau_ekman_days=1.5, rossby_radius_2_km=400.0, tau_selective_s=17280.0
    )
    config.onset = ml_collections.ConfigDict({"threshold": 1.0, "persistence_days": 5})
    config.learn = ml_collections.ConfigDict(
        {
            "seeds": 5,
            "source_steps": 1500,
            "target_steps": 400,
            "batch_size": 64,
            "learning_rate": 1e-3,
            "finetune_learning_rate": 3e-4,
            "val_fraction": 0.2,
            "target_sizes": (50, 100, 200),
            "n_boot": 500,
        }
    )
    config.explain = ml_collections.ConfigDict(
        {
            "background": 32,
            "eg_samples": 64,
            "explain_samples": 16,
            "importance_samples": 256,
            "block": (4, 8),
            "shap_max_evals": 321,
            "sparse_fractions": (0.01, 0.05, 0.10),
        }
    )
    # pyshqg venv (made by benchmarks/qg_model.py --make_venv); timed if present.
    config.pyshqg_python = "runs/pyshqg-venv/bin/python"
    config.throughput_days = 4
    return config


PRESETS = {
    "smoke": {
        "source.members": 2,
        "source.test_members": 1,
        "source.spinup_days": 10,
        "source.days": 200,
        "source.chunk_days": 70,
        "target.members": 2,
        "target.test_members": 1,
        "target.spinup_days": 10,
        "target.days": 200,
        "target.chunk_days": 70,
        "onset.persistence_days": 3,
        "learn.seeds": 2,
        "learn.source_steps": 20,
        "learn.target_steps": 10,
        "learn.target_sizes": (6,),
        "learn.n_boot": 20,
        "explain.background": 4,
        "explain.eg_samples": 8,
        "explain.explain_samples": 2,
        "explain.importance_samples": 8,
        "explain.shap_max_evals": 65,
        "explain.sparse_fractions": (0.05,),
        "pyshqg_python": "",
    },
    "small": {},
    "paper": {
        "source.members": 32,
        "source.days": 10000,
        "target.members": 8,
        "target.days": 4000,
        "learn.source_steps": 6000,
        "learn.target_steps": 1000,
        "learn.seeds": 10,
        "learn.target_sizes": (100, 300, 1000, 3000),
        "learn.n_boot": 1000,
        "explain.explain_samples": 64,
    },
}


def get_config(arg=None):
    return config_lib.build_config(arg, base=_base, presets=PRESETS)
