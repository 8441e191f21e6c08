"""The blocking experiment end to end (smoke), resumable runs and non-finite stops."""

import json
import os

import jax.numpy as jnp
import numpy as np
import pytest

from configs.blocking import get_config
from jaxsuite.climate import data, experiment, runs, stages

# One worker runs every test of this paper's smoke run (here and in
# tests/notebooks_test.py), so later runs reuse its compiled programs.
pytestmark = pytest.mark.xdist_group("blocking")


def test_run_ensemble_resumes_and_stops_on_non_finite_values(tmp_path):
    model = data.default_model(dtype=jnp.float32)
    q0 = stages.initial_states(2, 0, np.float32)
    full = runs.run_ensemble(
        model, q0, days=4, directory=str(tmp_path / "a"), chunk_days=2
    )
    assert full.shape == (2, 4, 1, 32, 64) and np.isfinite(full).all()
    # A run killed after its first chunk resumes and gives the same trajectory.
    runs.run_ensemble(model, q0, days=2, directory=str(tmp_path / "b"), chunk_days=2)
    resumed = runs.run_ensemble(
        model, q0, days=4, directory=str(tmp_path / "b"), chunk_days=2
    )
    np.testing.assert_array_equal(resumed, full)
    # Two good chunks, then an unstable configuration (negative thermal damping).
    dirc = str(tmp_path / "c")
    runs.run_ensemble(model, q0, days=4, directory=dirc, chunk_days=2)
    bad = model.replace(thermal=-1e4 * model.thermal)
    with pytest.raises(
        FloatingPointError,
        match=r"non-finite potential vorticity q at \d+ hPa in member \d by model "
        r"day [5-8] \(RK4 step \d+\); the last good checkpoint \(day 4\)",
    ):
        runs.run_ensemble(bad, q0, days=8, directory=dirc, chunk_days=2)
    kept = sorted(f for f in os.listdir(dirc) if f.startswith("psi_"))
    assert kept == ["psi_00000.npy", "psi_00001.npy"]
    np.testing.assert_array_equal(
        runs.run_ensemble(model, q0, days=4, directory=dirc, chunk_days=2), full
    )


@pytest.mark.slow
def test_smoke_experiment_writes_results(tmp_path):
    config = get_config("smoke")
    workdir = str(tmp_path / "run")
    results = experiment.run(config, workdir)
    assert results["paper"] == "blocking" and results["preset"] == "smoke"
    m = results["metrics"]
    for name in ("source_auc", "shap_eg_rank_corr", "model_member_days_per_s"):
        assert name in m and "unit" in m[name]
    assert 0.0 <= m["source_auc"]["value"] <= 1.0
    assert -1.0 <= m["shap_eg_rank_corr"]["value"] <= 1.0
    regimes = {r["regime"] for r in results["tables"]["transfer"]}
    assert regimes == {"direct", "zero-shot", "head-only", "fine-tune"}
    for row in results["tables"]["transfer"]:
        assert row["auc_lo"] <= row["auc_mean"] + 1e-9 <= row["auc_hi"] + 2e-9
    stats = {r["config"]: r for r in results["tables"]["blocking_statistics"]}
    assert set(stats) == {"source", "target"} and stats["source"]["onsets"] > 0
    json.dumps(results, allow_nan=False)  # strict JSON
    for fig in ("blocking_frequency.png", "shap_maps.png", "skill_vs_target_size.png"):
        assert os.path.getsize(os.path.join(workdir, fig)) > 1000
