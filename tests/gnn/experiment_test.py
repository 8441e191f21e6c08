"""The LSM-GNN experiment: results contract, transparency and exact resumption."""

import json
import os
import pathlib

import jax
import optax
import pytest

from configs import lsmgnn as lsmgnn_config
from jaxsuite.core import devices
from jaxsuite.core import metrics as metrics_lib
from jaxsuite.gnn import experiment, model, settings

# One worker runs every test of this paper's smoke run (here and in
# tests/notebooks_test.py), so later runs reuse its compiled programs.
pytestmark = pytest.mark.xdist_group("lsmgnn")

ROOT = pathlib.Path(__file__).parents[2]
ARG = (
    "smoke,graph.num_nodes=2500,"
    "policies=('none','independent_lru','lsm_gnn_pvp','belady')"
)


def _config_module():
    return lsmgnn_config


def test_every_preset_builds_and_names_known_policies():
    module = _config_module()
    for preset in module.PRESETS:
        config = module.get_config(preset)
        assert config.preset == preset
        assert set(config.policies) <= set(experiment.POLICY_TABLE)
    with pytest.raises(ValueError, match="Valid presets"):
        module.get_config("nope")


def test_every_policy_spends_the_same_budget():
    module = _config_module()
    for preset in module.PRESETS:
        config = module.get_config(preset)
        run = settings.from_config(config)
        n, ways = config.devices, config.cache.ways
        for name, entry in experiment.POLICY_TABLE.items():
            b = experiment.budget_of(name, run)
            assert b.budget_rows == int(
                config.cache.budget_fraction * config.graph.num_nodes
            )
            if entry["mode"] == "none":
                assert b.device_rows == b.ring_rows == 0
                continue
            spent = b.device_rows + (b.ring_rows if b.ring_in_budget else 0)
            assert b.budget_rows - n * (ways + 1) < spent <= b.budget_rows, name
            assert (b.ring_rows > 0) == entry.get("victim", False)
            if entry["mode"] == "bound":
                assert spent == b.budget_rows
                continue
            fcfg = experiment.fetch_config(name, run, 10)
            assert fcfg.num_sets * fcfg.ways * n == b.device_rows
            assert fcfg.ring_capacity * n == b.ring_rows
        inside = experiment.budget_of("lsm_gnn_pvp", run)
        extra = experiment.budget_of("lsm_gnn_pvp_ring_extra", run)
        lru = experiment.budget_of("independent_lru", run)
        assert inside.ring_rows == extra.ring_rows and not extra.ring_in_budget
        assert inside.device_rows < extra.device_rows == lru.device_rows


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    config = _config_module().get_config(ARG)
    workdir = str(tmp_path_factory.mktemp("lsmgnn"))
    return config, workdir, experiment.run(config, workdir)


def test_results_contract_and_transparency(smoke):
    config, workdir, results = smoke
    assert results["paper"] == "lsmgnn" and results["preset"] == ARG
    m = results["metrics"]
    assert m["transparent_policies"]["value"] == 1.0
    assert m["cache_mismatches"]["value"] == 0.0
    rows = {r["policy"]: r for r in results["tables"]["policies"]}
    assert list(rows) == list(config.policies)
    bound = rows.pop("belady")
    for r in rows.values():
        # Equal budgets: the victim ring's rows are inside the budget.
        assert r["cache_lines_total"] + r["ring_rows"] <= r["budget_rows"]
        assert r["victim_ring_rows_mean"] <= r["ring_rows"]
        # The unconstrained bound reads no more rows than any policy.
        assert bound["storage_rows_per_epoch"] <= r["storage_rows_per_epoch"]
        stages = r["measured_stages_s"]
        assert sum(stages.values()) == pytest.approx(r["measured_epoch_s"])
        total = r["hit_local"] + r["hit_remote"] + r["hit_victim"] + r["hit_storage"]
        assert total == pytest.approx(1.0)
        assert r["params_checksum"] == rows["none"]["params_checksum"]
        assert r["test_accuracy"] == rows["none"]["test_accuracy"] > 0.3
    assert rows["none"]["hit_storage"] == 1.0
    assert rows["independent_lru"]["hit_remote"] == 0.0
    assert rows["independent_lru"]["duplication_ratio"] > 1.0
    assert rows["lsm_gnn_pvp"]["duplication_ratio"] == 1.0
    assert rows["lsm_gnn_pvp"]["hit_victim"] > 0.0
    ratio = m["storage_bytes_vs_independent_lru"]["value"]
    pvp, lru = rows["lsm_gnn_pvp"], rows["independent_lru"]
    assert ratio == pytest.approx(
        pvp["storage_bytes_per_epoch"] / lru["storage_bytes_per_epoch"]
    )
    speed = m["modelled_speedup_vs_direct_storage"]["value"]
    assert speed == pytest.approx(
        rows["none"]["modelled_epoch_s"] / pvp["modelled_epoch_s"]
    )
    assert m["belady_hit_rate"]["value"] == bound["hit_cached"]
    names = ("hit_sources", "storage_rate", "storage_bytes", "modelled_epoch")
    for name in (*names, "measured_epoch"):
        with open(os.path.join(workdir, f"{name}.png"), "rb") as f:
            assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    assert "3.75x" in results["verdict"]


def test_rerun_reuses_finished_policies(smoke):
    config, workdir, results = smoke
    again = experiment.run(config, workdir)
    assert again["tables"] == results["tables"]


def test_interrupted_policy_resumes_exactly(smoke, tmp_path):
    config, workdir, _ = smoke
    with open(os.path.join(workdir, "policies", "lsm_gnn_pvp.json")) as f:
        straight = json.load(f)
    mesh = devices.make_mesh((config.devices,), ("dev",))
    run = settings.from_config(config)
    data = experiment.Data(run, str(tmp_path))
    step = model.make_train_step(mesh, "dev", optax.adam(config.train.learning_rate))
    args = ("lsm_gnn_pvp", run, data, mesh, str(tmp_path), None, step)
    first = data.sampler.steps_per_epoch + 3  # mid-epoch, past a checkpoint
    assert experiment.run_policy(*args, stop_at=first) is None
    jax.clear_caches()
    resumed = experiment.run_policy(*args)
    assert resumed["params_checksum"] == straight["params_checksum"]
    for key in ("hit_local", "hit_remote", "hit_victim", "storage_bytes_per_epoch"):
        assert resumed[key] == straight[key], key
    assert metrics_lib.read_metrics(str(tmp_path)) == []
