"""Tests for jaxsuite.core.devices on the 8 CPU devices from conftest.py."""

from __future__ import annotations

import jax
import numpy as np
import pytest
from absl import flags
from jax.sharding import NamedSharding

from jaxsuite.core import devices

AxisType = jax.sharding.AxisType


def _data(*shape: int) -> np.ndarray:
    return np.arange(np.prod(shape), dtype=np.float32).reshape(shape)


# --------------------------------------------------------------------------- #
# Meshes.
# --------------------------------------------------------------------------- #


@pytest.mark.parametrize("explicit", [False, True])
def test_make_mesh_shape_names_and_axis_types(explicit: bool) -> None:
    mesh = devices.make_mesh((4, 2), ("a", "b"), explicit=explicit)
    assert mesh.axis_names == ("a", "b")
    assert dict(mesh.shape) == {"a": 4, "b": 2}
    assert mesh.devices.shape == (4, 2)
    assert sorted(d.id for d in mesh.devices.flat) == sorted(
        d.id for d in jax.devices()
    )
    kind = AxisType.Explicit if explicit else AxisType.Auto
    assert tuple(mesh.axis_types) == (kind, kind)


def test_make_mesh_on_a_subset_of_devices() -> None:
    subset = jax.devices()[4:]
    mesh = devices.make_mesh((2, 2), ("a", "b"), devices=subset)
    assert {d.id for d in mesh.devices.flat} == {d.id for d in subset}


def test_make_mesh_rejects_mismatched_names() -> None:
    with pytest.raises(ValueError, match="differ in length"):
        devices.make_mesh((4, 2), ("a",))


def test_data_mesh_spans_all_devices() -> None:
    mesh = devices.data_mesh()
    assert mesh.axis_names == ("data",)
    assert mesh.devices.shape == (jax.device_count(),)
    assert {d.id for d in mesh.devices.flat} == {d.id for d in jax.devices()}
    assert tuple(mesh.axis_types) == (AxisType.Auto,)
    named = devices.data_mesh("batch", explicit=True)
    assert named.axis_names == ("batch",)
    assert tuple(named.axis_types) == (AxisType.Explicit,)


def test_shard_map_in_specs_on_auto_and_explicit_meshes() -> None:
    """Auto axes reshard an input to in_specs; Explicit axes need it placed."""
    x = _data(16)
    for explicit in (False, True):
        mesh = devices.make_mesh((8,), ("x",), explicit=explicit)
        double = jax.jit(
            jax.shard_map(
                lambda v: 2 * v, mesh=mesh, in_specs=jax.P("x"), out_specs=jax.P("x")
            )
        )
        placed = jax.device_put(x, NamedSharding(mesh, jax.P("x")))
        np.testing.assert_array_equal(devices.to_host(double(placed)), 2 * x)
        replicated = jax.device_put(x, NamedSharding(mesh, jax.P()))
        if explicit:
            with pytest.raises(ValueError, match="in_specs"):
                double(replicated)
        else:
            np.testing.assert_array_equal(devices.to_host(double(replicated)), 2 * x)


# --------------------------------------------------------------------------- #
# Process-local data.
# --------------------------------------------------------------------------- #


@pytest.mark.parametrize("process_count", [1, 2, 3, 4, 6])
def test_process_batch_slice_partitions_the_batch(process_count: int) -> None:
    batch = 24
    slices = [
        devices.process_batch_slice(batch, process_index=i, process_count=process_count)
        for i in range(process_count)
    ]
    rows = np.concatenate([np.arange(batch)[s] for s in slices])
    np.testing.assert_array_equal(rows, np.arange(batch))
    assert {s.stop - s.start for s in slices} == {batch // process_count}


def test_process_batch_slice_defaults_to_this_process() -> None:
    assert jax.process_count() == 1
    assert devices.process_batch_slice(10) == slice(0, 10)
    mesh = devices.make_mesh((4, 2), ("a", "b"))
    for spec in (jax.P("a", "b"), jax.P(None, "a"), jax.P()):
        sharding = NamedSharding(mesh, spec)
        assert devices.process_batch_slice(8, sharding=sharding) == slice(0, 8)


def test_process_batch_slice_rejects_bad_splits() -> None:
    with pytest.raises(ValueError, match="does not split"):
        devices.process_batch_slice(10, process_index=0, process_count=3)
    with pytest.raises(ValueError, match="not in"):
        devices.process_batch_slice(10, process_index=2, process_count=2)


@pytest.mark.parametrize(
    "spec", [jax.P("a", "b"), jax.P("b", None), jax.P(None, "a"), jax.P()]
)
def test_global_array_from_process_local_round_trips(spec: jax.P) -> None:
    mesh = devices.make_mesh((4, 2), ("a", "b"))
    data = _data(8, 4)
    rows = devices.process_batch_slice(8, sharding=NamedSharding(mesh, spec))
    array = devices.global_array_from_process_local(data[rows], mesh, spec)
    assert array.shape == data.shape
    assert array.dtype == data.dtype
    assert array.sharding == NamedSharding(mesh, spec)
    for shard in array.addressable_shards:
        np.testing.assert_array_equal(np.asarray(shard.data), data[shard.index])
    np.testing.assert_array_equal(devices.to_host(array), data)


def test_global_array_from_process_local_with_global_shape() -> None:
    mesh = devices.data_mesh()
    data = _data(16, 3)
    array = devices.global_array_from_process_local(
        data, mesh, jax.P("data"), global_shape=(16, 3)
    )
    assert array.shape == (16, 3)
    assert [s.data.shape for s in array.addressable_shards] == [(2, 3)] * 8
    np.testing.assert_array_equal(devices.to_host(array), data)


def test_to_host_maps_over_pytrees() -> None:
    mesh = devices.data_mesh()
    x = _data(8, 2)
    tree = {
        "sharded": jax.device_put(x, NamedSharding(mesh, jax.P("data"))),
        "numpy": x[:2],
        "scalar": jax.numpy.float32(3.0),
    }
    out = devices.to_host(tree)
    assert all(isinstance(v, np.ndarray) for v in out.values())
    np.testing.assert_array_equal(out["sharded"], x)
    np.testing.assert_array_equal(out["numpy"], x[:2])
    assert out["scalar"] == np.float32(3.0)


# --------------------------------------------------------------------------- #
# Multi-process start-up (jax.distributed.initialize replaced by a recorder).
# --------------------------------------------------------------------------- #


@pytest.fixture
def recorder(monkeypatch: pytest.MonkeyPatch) -> dict[str, list]:
    """Records calls to jax.distributed.initialize and jax.config.update."""
    calls: dict[str, list] = {"initialize": [], "config": []}
    for name in (
        devices.ENV_COORDINATOR,
        devices.ENV_NUM_PROCESSES,
        devices.ENV_PROCESS_ID,
        devices.ENV_LOCAL_DEVICE_COUNT,
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(devices, "is_distributed_initialized", lambda: False)
    monkeypatch.setattr(
        jax.distributed,
        "initialize",
        lambda **kwargs: calls["initialize"].append(kwargs),
    )
    monkeypatch.setattr(
        jax.config, "update", lambda name, value: calls["config"].append((name, value))
    )
    return calls


def test_initialize_distributed_single_process_is_a_no_op(recorder) -> None:
    assert devices.initialize_distributed() is False
    assert recorder == {"initialize": [], "config": []}


def test_initialize_distributed_from_environment(recorder, monkeypatch) -> None:
    monkeypatch.setenv(devices.ENV_COORDINATOR, "10.0.0.1:1234")
    monkeypatch.setenv(devices.ENV_NUM_PROCESSES, "4")
    monkeypatch.setenv(devices.ENV_PROCESS_ID, "3")
    monkeypatch.setenv(devices.ENV_LOCAL_DEVICE_COUNT, "2")
    monkeypatch.setenv("JAX_PLATFORMS", "cpu")
    assert devices.initialize_distributed(initialization_timeout=5) is True
    assert recorder["initialize"] == [
        {
            "coordinator_address": "10.0.0.1:1234",
            "num_processes": 4,
            "process_id": 3,
            "initialization_timeout": 5,
        }
    ]
    assert ("jax_num_cpu_devices", 2) in recorder["config"]
    assert ("jax_cpu_collectives_implementation", "gloo") in recorder["config"]


def test_initialize_distributed_arguments_override_environment(
    recorder, monkeypatch
) -> None:
    monkeypatch.setenv(devices.ENV_COORDINATOR, "10.0.0.1:1234")
    monkeypatch.setenv(devices.ENV_NUM_PROCESSES, "4")
    monkeypatch.setenv(devices.ENV_PROCESS_ID, "3")
    assert devices.initialize_distributed("127.0.0.1:99", 2, 0) is True
    (call,) = recorder["initialize"]
    assert call == {
        "coordinator_address": "127.0.0.1:99",
        "num_processes": 2,
        "process_id": 0,
    }


def test_initialize_distributed_rejects_partial_settings(recorder, monkeypatch):
    monkeypatch.setenv(devices.ENV_COORDINATOR, "10.0.0.1:1234")
    with pytest.raises(ValueError, match="num_processes, process_id"):
        devices.initialize_distributed()
    with pytest.raises(ValueError, match="not in"):
        devices.initialize_distributed(num_processes=2, process_id=2)
    monkeypatch.setenv(devices.ENV_NUM_PROCESSES, "two")
    with pytest.raises(ValueError, match="not an int"):
        devices.initialize_distributed()
    assert recorder["initialize"] == []


def test_distributed_flags_are_idempotent_and_initialize(recorder) -> None:
    fv = flags.FlagValues()
    devices.define_distributed_flags(fv)
    devices.define_distributed_flags(fv)
    fv(["prog"])
    assert devices.initialize_from_flags(fv) is False
    fv(
        [
            "prog",
            "--coordinator_address=127.0.0.1:5000",
            "--num_processes=2",
            "--process_id=1",
            "--local_device_count=4",
        ]
    )
    assert devices.initialize_from_flags(fv) is True
    assert recorder["initialize"] == [
        {"coordinator_address": "127.0.0.1:5000", "num_processes": 2, "process_id": 1}
    ]
    assert ("jax_num_cpu_devices", 4) in recorder["config"]
