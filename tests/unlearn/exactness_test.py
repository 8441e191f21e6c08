"""Exact unlearning: after deletions the served model is the retrained one, bit for bit.

One tiny S3T run (2 shards x 3 slices x 3 cyclic sequences, shards trained in
parallel on 2 devices) and one SISA run are trained once for the module.
The references are retrained from scratch through the same per-device
program (like with like).
"""

import pathlib
import shutil

import chex
import jax
import numpy as np
import pytest
from flax import nnx

from jaxsuite.unlearn import data as data_lib
from jaxsuite.unlearn import deletion, ledger, runs, sisa, training
from jaxsuite.unlearn import model as model_lib
from jaxsuite.unlearn import sequences as seq_lib

M, L, B, PER_SLICE = 2, 3, 3, 6
WIDTH, DEPTH = 16, 3


def _settings(method):
    return runs.TrainSettings(
        method, epochs=2, batch_size=4, learning_rate=3e-3, seed=7
    )


def _setup(x, y, runner):
    backbone = model_lib.Backbone(64, WIDTH, DEPTH, 5, rngs=nnx.Rngs(3))
    pretrained = nnx.to_pure_dict(nnx.state(backbone, nnx.Param))
    return runs.make_setup(
        pretrained,
        adapters=model_lib.LoRAAdapters(rank=2, dropout=0.1),
        d_in=64,
        width=WIDTH,
        depth=DEPTH,
        num_classes=5,
        num_groups=L,
        seed=7,
        x=x,
        y=y,
        layout=data_lib.shard_layout(len(y), M, L),
        runner=runner,
    )


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    split = data_lib.load_digits_split(
        seed=0,
        test_fraction=0.2,
        num_shards=M,
        num_slices=L,
        max_train=M * L * PER_SLICE,
    )
    runner = training.NodeRunner(M)
    setup = _setup(split.x_train, split.y_train, runner)
    root = tmp_path_factory.mktemp("s3t")
    seqs = [seq_lib.cyclic(L, B)] * M
    setup.train(str(root / "s3t"), _settings("s3t"), seqs)
    setup.train(str(root / "sisa"), _settings("sisa"), [[tuple(range(L))]] * M)
    return {"setup": setup, "root": root, "split": split, "seqs": seqs}


def _copy(trained, name, tmp_path):
    dst = tmp_path / name
    shutil.copytree(trained["root"] / name, dst)
    return str(dst)


def _bitwise_equal(a, b):
    """Same keys and bitwise equal arrays (for the checks that expect a change)."""
    return set(a) == set(b) and all(np.array_equal(a[k], b[k]) for k in a)


def test_served_model_after_deletions_is_bitwise_the_retrained_one(trained, tmp_path):
    setup, run = trained["setup"], _copy(trained, "s3t", tmp_path)
    settings = _settings("s3t")
    layout = setup.layout
    # Shard 0: delete from slice 1, then slice 2; shard 1: from slice 0.
    samples = [int(layout[0, 1, 2]), int(layout[0, 2, 0]), int(layout[1, 0, 4])]
    with deletion.DeletionStore(run) as store:
        for sample in samples:
            store.delete(sample)
        body = store.body
    served = ledger.served(body)
    assert served == {0: (0,), 1: (1, 2)}
    per_shard = setup.shard_logits(run, body, trained["split"].x_test)
    for shard, prefix in served.items():
        node = setup.node(run, shard, prefix)
        gone = {i for i in samples if body["assignment"][i][0] == shard}
        # Retrained from scratch on the surviving prefix ...
        scratch = setup.train_chain(settings, shard, prefix)[-1]
        chex.assert_trees_all_equal(node, scratch)
        # ... and on the whole prefix with the deleted samples removed.
        without = setup.train_chain(settings, shard, prefix, removed=gone)[-1]
        chex.assert_trees_all_equal(node, without)
        logits = setup._logits(scratch, trained["split"].x_test)
        assert np.array_equal(per_shard[shard], logits)
        # Every served parameter group has seen none of the deleted slices.
        hit = {body["assignment"][i][1] for i in gone}
        prov = body["provenance"][str(shard)][ledger.node_key(prefix)]
        for group, slices in prov["groups"].items():
            assert not hit & set(slices), (shard, group)


def test_replacing_the_deleted_sample_by_noise_leaves_the_served_model_unchanged(
    trained, tmp_path
):
    setup, split = trained["setup"], trained["split"]
    sample = int(setup.layout[0, 1, 3])
    x = split.x_train.copy()
    x[sample] = np.random.default_rng(0).uniform(0, 1, size=x.shape[1])
    noisy = _setup(x, split.y_train, setup.runner)
    noisy_run = str(tmp_path / "noisy")
    noisy.train(noisy_run, _settings("s3t"), trained["seqs"])
    run = str(trained["root"] / "s3t")
    body, _ = ledger.apply_deletion(ledger.load(run), sample)
    for shard, prefix in ledger.served(body).items():
        chex.assert_trees_all_equal(
            setup.node(run, shard, prefix), noisy.node(noisy_run, shard, prefix)
        )
    # The noise did change every node that trained on slice 1 of shard 0.
    changed = noisy.node(noisy_run, 0, (1,))
    assert not _bitwise_equal(setup.node(run, 0, (1,)), changed)


def test_parallel_shards_match_one_device_bitwise(trained):
    setup = trained["setup"]
    jobs = [(0, (2,)), (1, (0,)), (1, (1,))]
    parents = [setup.init_flats[s] for s, _ in jobs]
    parallel = setup.train_nodes(_settings("s3t"), jobs, parents)
    single = setup.train_nodes(
        _settings("s3t"), jobs, parents, runner=training.NodeRunner(1)
    )
    for a, b in zip(parallel, single):
        chex.assert_trees_all_equal(a, b)
    assert not _bitwise_equal(parallel[1], parallel[2])  # Different slices.


def test_sisa_retraining_equals_training_without_the_sample(trained, tmp_path):
    setup, run = trained["setup"], _copy(trained, "sisa", tmp_path)
    settings = _settings("sisa")
    sample = int(setup.layout[1, 1, 0])
    before = setup.node(run, 1, (0,))
    effect = sisa.delete_and_retrain(setup, run, settings, sample)
    assert effect["stages_retrained"] == 2
    body = ledger.load(run)
    assert body["state"]["retrained"] == [0, 1]
    order = tuple(range(L))
    scratch = setup.train_chain(settings, 1, order, removed={sample})
    for t, reference in enumerate(scratch, start=1):
        chex.assert_trees_all_equal(setup.node(run, 1, order[:t]), reference)
    chex.assert_trees_all_equal(setup.node(run, 1, (0,)), before)  # Slice 0 untouched.
    prov = body["provenance"]["1"][ledger.node_key(order)]
    assert prov["removed"] == [sample]
    with pytest.raises(ledger.AlreadyDeletedError):
        sisa.delete_and_retrain(setup, run, settings, sample)


def test_missing_stage_checkpoint_is_a_clear_error_and_changes_nothing(
    trained, tmp_path
):
    setup, run = trained["setup"], _copy(trained, "s3t", tmp_path)
    sample = int(setup.layout[0, 0, 0])  # Slice 0: shard 0 then serves (1, 2).
    shutil.rmtree(ledger.checkpoint_dir(run, 0, (1, 2)))
    path = pathlib.Path(run, ledger.LEDGER_FILE)
    before = path.read_bytes()
    with deletion.DeletionStore(run) as store:
        with pytest.raises(ledger.MissingCheckpointError, match="missing"):
            store.delete(sample)
    assert path.read_bytes() == before
    with pytest.raises(ledger.MissingCheckpointError, match="missing"):
        training.load_node(run, 0, (1, 2), setup.init_flats[0])


def test_non_finite_loss_stops_training_naming_the_stage(trained):
    setup, split = trained["setup"], trained["split"]
    x = split.x_train.copy()
    x[int(setup.layout[0, 2, 1])] = np.nan
    broken = _setup(x, split.y_train, setup.runner)
    with pytest.raises(FloatingPointError, match="stage 1 .shard 0, prefix .2.."):
        broken.train_nodes(_settings("s3t"), [(0, (2,))], [broken.init_flats[0]])


def test_stage_keys_are_distinct_per_shard_and_prefix():
    keys = {
        tuple(np.asarray(training.stage_key(7, s, p)).tolist())
        for s in range(2)
        for p in seq_lib.prefixes(seq_lib.cyclic(3, 6))
    }
    assert len(keys) == 2 * 15
    assert jax.random.key_data(training.stage_key(7, 0, (1,))).shape == (2,)
