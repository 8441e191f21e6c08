"""The MoS experiment: method strings, the report's arithmetic, a smoke run."""

import json
import os

import numpy as np
import pytest

from jaxsuite.core import metrics as metrics_lib
from jaxsuite.lora import adapt, data, experiment, report

# One worker runs every test of this paper's smoke run (here and in
# tests/notebooks_test.py), so later runs reuse its compiled programs.
pytestmark = pytest.mark.xdist_group("mos")


def test_parse_method_strings():
    common = dict(target_modules=("q_proj",), alpha=16.0, dropout=0.1)
    label, cfg = adapt.parse_method("mos r=8 e=2 p=1 l=4", **common)
    assert label == "MoS r=8 e=2 p=1 l=4"
    assert (cfg.rank, cfg.equivalent_rank, cfg.private_rank, cfg.shards_per_vector) == (
        8,
        2,
        1,
        4,
    )
    assert cfg.scale == 2.0 and cfg.dropout == 0.1
    _, pro = adapt.parse_method("prolora r=4 u=1 m=3", **common)
    assert (pro.sharing_a, pro.sharing_b, pro.unshared_rank) == (3, 3, 1)
    with pytest.raises(ValueError, match="takes"):
        adapt.parse_method("lora q=2", **common)


def _row(method, params, mean, std, n=5):
    return {
        "method": method,
        "trainable_params": params,
        "score_mean": mean,
        "score_std": std,
        "scores": [mean] * n,
    }


def test_lora_equivalent_interpolates_in_log_parameters():
    rows = [_row("LoRA r=2", 100, 10.0, 1.0), _row("LoRA r=8", 400, 30.0, 1.0)]
    assert report.lora_equivalent(rows, 20.0) == pytest.approx(200.0)  # geometric mid
    assert report.lora_equivalent(rows, 10.0) == pytest.approx(100.0)
    assert "below" in report.lora_equivalent(rows, 5.0)
    assert "above" in report.lora_equivalent(rows, 31.0)
    a, b = _row("x", 1, 10.0, 1.0), _row("y", 1, 9.0, 1.0)
    assert report.compare(a, b) == "tie"  # 1 point < 2 standard errors (1.26)
    assert report.compare(_row("x", 1, 12.0, 1.0), b) == "above"
    assert report.compare(b, _row("x", 1, 12.0, 1.0)) == "below"


def test_remap_chain_relabels_a_cycle_and_low_rank_update_has_its_rank():
    import jax

    chain = data.make_chain(jax.random.PRNGKey(0), 12, 1.0)
    remapped = data.remap_chain(chain, 5, seed=3)
    moved = np.flatnonzero(np.any(np.asarray(remapped.u != chain.u), axis=0))
    assert len(moved) == 5  # five output columns changed, others equal
    np.testing.assert_array_equal(
        np.sort(np.asarray(remapped.u[:, moved]), axis=1),
        np.sort(np.asarray(chain.u[:, moved]), axis=1),
    )
    w = jax.random.normal(jax.random.PRNGKey(1), (10, 14))
    delta = np.asarray(data.low_rank_update(jax.random.PRNGKey(2), w, 3, 0.5))
    s = np.linalg.svd(delta, compute_uv=False)
    assert np.sum(s > 1e-5 * s[0]) == 3 and np.allclose(s[:3], s[0], rtol=1e-4)
    assert np.linalg.norm(delta) == pytest.approx(
        0.5 * float(np.linalg.norm(w)), rel=1e-4
    )


@pytest.mark.slow
def test_smoke_run_writes_results_and_resumes(tmp_path, monkeypatch, load_config):
    config = load_config("mos", "smoke")
    workdir = str(tmp_path / "mos")
    results = experiment.run(config, workdir)
    assert results["paper"] == "mos" and results["preset"] == "smoke"
    rows = results["tables"]["methods"]
    assert len(rows) == len(config.tasks) * len(config.methods)
    by = {(r["task"], r["method"]): r for r in rows}
    for task in config.tasks:
        lora_row, mos_row = by[(task, "LoRA r=1")], by[(task, "MoS r=4 e=1 p=0 l=2")]
        assert lora_row["trainable_params"] == mos_row["trainable_params"]
        assert all(np.isfinite(r["score_mean_pct"]) for r in rows if r["task"] == task)
        assert results["metrics"][f"{task}_base_metric"]["value"] > 0
    assert os.path.exists(os.path.join(workdir, "mos_score_vs_params.png"))
    assert "At equal budget MoS" in results["verdict"]
    json.dumps(results, allow_nan=False)  # strict JSON
    # A rerun on the same workdir restores the base and every finished phase:
    # nothing is trained again.
    os.remove(os.path.join(workdir, metrics_lib.RESULTS_FILE))

    def no_training(*args, **kwargs):
        raise AssertionError("a finished phase was trained again")

    monkeypatch.setattr(experiment, "run_method", no_training)
    again = experiment.run(config, workdir)
    assert again["tables"]["methods"] == rows
