"""The phase cache (finished sub-runs kept by name) and the stopwatch."""

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxsuite.core import atomic, phases
from jaxsuite.core import train as train_lib


def test_a_json_summary_round_trips_as_json(tmp_path):
    cache = phases.PhaseCache(str(tmp_path), "policies")
    value = {"loss": 0.25, "rows": [1, 2, 3], "name": "lru", "nested": {"a": None}}
    assert cache.load("lru") is None
    assert cache.save("lru", value) is value
    path = tmp_path / "policies" / "lru.json"
    assert atomic.read_json(str(path)) == value  # a plain JSON file
    assert cache.load("lru") == value
    assert cache.names() == ["lru"]


def test_arrays_and_json_round_trip_in_one_npz(tmp_path):
    cache = phases.PhaseCache(str(tmp_path), "traces")
    load = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    moved = -np.ones(5, np.int32)
    value = {
        "load": load,
        "moved": moved,
        "device": jnp.arange(3.0),
        "curve": {"psnr": [10.0, 20.5]},
        "params": 7,
    }
    cache.save("run", value)
    assert os.listdir(tmp_path / "traces") == ["run.npz"]
    got = cache.load("run")
    assert set(got) == set(value)
    for key in ("load", "moved"):
        assert got[key].dtype == value[key].dtype
        np.testing.assert_array_equal(got[key], value[key])
    np.testing.assert_array_equal(got["device"], np.arange(3.0, dtype=np.float32))
    assert got["curve"] == {"psnr": [10.0, 20.5]} and got["params"] == 7
    # A file of arrays only (as numpy writes it) reads back too.
    atomic.save_npz(str(tmp_path / "traces" / "old.npz"), loss=np.arange(3.0))
    np.testing.assert_array_equal(cache.load("old")["loss"], np.arange(3.0))


def test_saving_another_kind_replaces_the_earlier_file(tmp_path):
    cache = phases.PhaseCache(str(tmp_path))
    cache.save("p", {"a": 1})
    cache.save("p", {"a": 1, "x": np.zeros(2)})
    assert os.listdir(tmp_path / "phases") == ["p.npz"]
    cache.save("p", {"a": 2})
    assert os.listdir(tmp_path / "phases") == ["p.json"]
    assert cache.load("p") == {"a": 2}


def test_a_failed_write_keeps_the_earlier_summary(tmp_path):
    # Writes are atomic: a value that cannot be written (a NaN in its JSON)
    # leaves the earlier file whole and no temporary file beside it.
    cache = phases.PhaseCache(str(tmp_path))
    cache.save("p", {"psnr": 20.0})
    with pytest.raises(ValueError, match="psnr is nan"):
        cache.save("p", {"psnr": float("nan")})
    with pytest.raises(ValueError, match="psnr is nan"):
        cache.save("p", {"psnr": float("nan"), "x": np.zeros(2)})
    assert os.listdir(tmp_path / "phases") == ["p.json"]
    assert cache.load("p") == {"psnr": 20.0}


@pytest.mark.parametrize("kind", ["json", "npz"])
def test_a_damaged_file_is_set_aside_and_recomputed(tmp_path, caplog, kind):
    cache = phases.PhaseCache(str(tmp_path))
    value = {"a": 1.5} if kind == "json" else {"x": np.arange(100.0)}
    cache.save("p", value)
    path = tmp_path / "phases" / f"p.{kind}"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])  # cut after it was written
    calls = []

    def fn():
        calls.append(1)
        return value

    with caplog.at_level("WARNING"):
        got = cache.get_or_run("p", fn)
    assert calls == [1]
    assert f"p.{kind} cannot be read" in caplog.text and "recomputing" in caplog.text
    assert (tmp_path / "phases" / f"p.{kind}.bad").read_bytes() == data[
        : len(data) // 2
    ]
    np.testing.assert_array_equal(
        cache.load("p")[next(iter(value))], got[next(iter(value))]
    )
    # Loaded from the file now: not computed again.
    cache.get_or_run("p", fn)
    assert calls == [1]


def test_get_or_run_runs_once_and_skips_unfinished_phases(tmp_path):
    cache = phases.PhaseCache(str(tmp_path))
    calls = []
    assert cache.get_or_run("p", lambda: calls.append(1) or {"v": len(calls)}) == {
        "v": 1
    }
    assert cache.get_or_run("p", lambda: calls.append(1) or {"v": len(calls)}) == {
        "v": 1
    }
    assert calls == [1]
    # A phase that returns None did not finish: nothing is kept.
    assert cache.get_or_run("q", lambda: None) is None
    assert cache.names() == ["p"]
    with pytest.raises(ValueError, match="plain file name"):
        cache.path("../p")


def test_only_process_zero_writes(tmp_path, monkeypatch):
    cache = phases.PhaseCache(str(tmp_path))
    monkeypatch.setattr(jax, "process_index", lambda: 1)
    value = {"a": 1, "x": np.ones(2)}
    assert cache.get_or_run("p", lambda: value) is value
    cache.save("q", {"a": 1})
    assert not os.path.exists(tmp_path / "phases")
    monkeypatch.setattr(jax, "process_index", lambda: 0)
    cache.save("p", value)
    # A damaged file seen from another process is not moved by it.
    (tmp_path / "phases" / "p.npz").write_bytes(b"not a zip")
    monkeypatch.setattr(jax, "process_index", lambda: 1)
    assert cache.load("p") is None
    assert os.listdir(tmp_path / "phases") == ["p.npz"]


class _Clock:
    """A clock that advances only when told to."""

    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def test_stopwatch_counts_only_the_timed_segments():
    clock = _Clock()
    watch = phases.Stopwatch(clock)
    with watch.timing():
        clock.now += 2.0
    clock.now += 5.0  # evaluation, between segments: not counted
    watch.start()
    clock.now += 1.0
    with watch.paused():
        clock.now += 10.0
    clock.now += 0.5
    assert watch.stop() == pytest.approx(0.5)  # the segment since the pause
    assert watch.elapsed == pytest.approx(3.5) and not watch.running
    watch.add(1.0)
    assert watch.elapsed == pytest.approx(4.5)
    with pytest.raises(RuntimeError, match="not running"):
        watch.stop()
    watch.start()
    with pytest.raises(RuntimeError, match="already running"):
        watch.start()


def test_stopwatch_waits_for_the_arrays_it_is_given():
    waited = []

    class Pending:
        def block_until_ready(self):
            waited.append(1)
            return self

    watch = phases.Stopwatch()
    with watch.timing() as done:
        done(Pending(), {"a": Pending()})
    assert waited == [1, 1] and watch.elapsed >= 0.0


def test_train_loop_times_the_steps_and_not_the_hooks(tmp_path, monkeypatch):
    clock = _Clock()
    watch = phases.Stopwatch(clock)

    def step_fn(state, step):
        clock.now += 1.0  # a step takes one second
        return {"x": state["x"] + 1.0}, {"loss": jnp.float32(1.0)}

    def evaluate(step, state):
        clock.now += 100.0  # evaluation: not counted

    state = train_lib.train_loop(
        {"x": jnp.zeros(())},
        step_fn,
        num_steps=4,
        workdir=str(tmp_path),
        checkpoint_every=2,
        hooks=(evaluate,),
        stopwatch=watch,
    )
    assert float(state["x"]) == 4.0
    assert watch.elapsed == pytest.approx(4.0)
