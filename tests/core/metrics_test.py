"""Tests for the metric writer, TensorBoard events, results.json and figures."""

import glob
import json
import os
import pathlib

import jax.numpy as jnp
import numpy as np
import pytest

from jaxsuite.core import figures
from jaxsuite.core import metrics as metrics_lib
from jaxsuite.core import tensorboard as tb_events


def test_crc32c_known_vectors():
    # Check values from RFC 3720, appendix B.4.
    assert tb_events.crc32c(b"123456789") == 0xE3069283
    assert tb_events.crc32c(bytes(32)) == 0x8A9136AA
    assert tb_events.crc32c(bytes([0xFF] * 32)) == 0x62A8AB43


def test_writer_writes_jsonl_and_tensorboard_readable_events(tmp_path):
    workdir = str(tmp_path)
    with metrics_lib.MetricWriter(workdir) as w:
        w.write_hparams({"lr": 0.1, "model": {"width": 8}})
        for step in range(1, 4):
            w.write_scalars(step, {"loss": jnp.float32(1.0 / step), "acc": step * 0.25})
    rows = metrics_lib.read_metrics(workdir)
    assert [r["step"] for r in rows] == [1, 2, 3]
    np.testing.assert_allclose([r["loss"] for r in rows], [1, 0.5, 1 / 3], rtol=1e-6)
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        first = json.loads(f.readline())
    assert first == {"hparams": {"lr": 0.1, "model.width": 8}}

    # TensorBoard's own reader (which checks the record CRCs) must see the
    # same scalars and the hparams text.
    loader = pytest.importorskip(
        "tensorboard.backend.event_processing.event_file_loader"
    )
    (path,) = glob.glob(os.path.join(workdir, "tb", "events.out.tfevents.*"))
    events = list(loader.LegacyEventFileLoader(path).Load())
    assert events[0].file_version == "brain.Event:2"
    scalars = {}
    texts = []
    for event in events[1:]:
        for value in event.summary.value:
            if value.HasField("tensor"):
                texts.append(value.tensor.string_val[0].decode())
                assert value.metadata.plugin_data.plugin_name == "text"
            else:
                scalars.setdefault(value.tag, []).append(
                    (event.step, value.simple_value)
                )
    assert scalars["acc"] == [(1, 0.25), (2, 0.5), (3, 0.75)]
    np.testing.assert_allclose(
        [v for _, v in scalars["loss"]], [1, 0.5, 1 / 3], rtol=1e-6
    )
    assert "| model.width | 8 |" in texts[0]


def test_results_round_trip_and_validation(tmp_path):
    import ml_collections

    config = ml_collections.ConfigDict({"steps": 3, "preset": "smoke,steps=3"})
    path = metrics_lib.write_results(
        str(tmp_path),
        paper="demo",
        config=config,
        metrics={"psnr": metrics_lib.metric(jnp.float32(30.5), "dB")},
        claim="c",
        verdict="v",
        wall_seconds=1.5,
        tables={"pairs": [{"a": 1, "b": (1, 2)}]},
    )
    res = metrics_lib.read_results(path)
    assert res["preset"] == "smoke,steps=3"
    assert res["metrics"] == {"psnr": {"value": 30.5, "unit": "dB"}}
    assert res["tables"] == {"pairs": [{"a": 1, "b": [1, 2]}]}
    assert res["env"]["backend"] == "cpu" and res["env"]["jax"]
    with pytest.raises(ValueError, match="needs a 'value' and a 'unit'"):
        metrics_lib.write_results(
            str(tmp_path),
            paper="demo",
            config=config,
            metrics={"psnr": {"value": 1.0}},
            claim="c",
            verdict="v",
            wall_seconds=0,
        )


def test_figures_write_pngs_with_the_drawn_content(tmp_path):
    from PIL import Image

    img = np.zeros((8, 8, 3))
    img[:4] = 1.0
    path = figures.save_image(str(tmp_path / "img.png"), img)
    back = np.asarray(Image.open(path)) / 255.0
    np.testing.assert_array_equal(back, img)
    grid = figures.image_grid(
        str(tmp_path / "grid.png"), [img, img[..., 0]], ["a", "b"]
    )
    curves = figures.plot_curves(
        str(tmp_path / "c.png"), {"x": ([1, 2], [3, 4])}, xlabel="x", ylabel="y"
    )
    bars = figures.plot_bars(str(tmp_path / "b.png"), {"a": 1.0, "b": 2.0}, ylabel="v")
    for p in (grid, curves, bars):
        with Image.open(p) as im:
            assert im.format == "PNG" and min(im.size) > 100


def test_writer_flushes_each_row_and_resumes_without_repeats(tmp_path):
    wd = str(tmp_path)
    w = metrics_lib.MetricWriter(wd)
    w.write_hparams({"lr": 0.1, "preset": "smoke"})
    for step in (1, 2, 3):
        w.write_scalars(step, {"loss": 1.0 / step})
    # Readable before the writer closes: a killed run keeps its rows.
    assert [r["step"] for r in metrics_lib.read_metrics(wd)] == [1, 2, 3]
    with open(os.path.join(wd, "metrics.jsonl"), "a") as f:
        f.write('{"step": 4, "lo')  # a row cut by SIGKILL mid-write
    assert [r["step"] for r in metrics_lib.read_metrics(wd)] == [1, 2, 3]
    # The resumed run repeats steps 2-3 and its hparams (paced differently).
    with metrics_lib.MetricWriter(wd) as again:
        again.write_hparams({"lr": 0.1, "preset": "smoke,step_delay=1"})
        for step in (2, 3, 4):
            again.write_scalars(step, {"loss": 1.0 / step})
        again.write_scalars(4, {"test_mse": 0.5})  # other names: a new row
    w.close()
    with open(os.path.join(wd, "metrics.jsonl")) as f:
        rows = [json.loads(line) for line in f]
    assert sum("hparams" in r for r in rows) == 1
    steps = [(r["step"], sorted(r)) for r in rows if "step" in r]
    assert steps == [
        (1, ["loss", "step"]),
        (2, ["loss", "step"]),
        (3, ["loss", "step"]),
        (4, ["loss", "step"]),
        (4, ["step", "test_mse"]),
    ]


def test_results_are_strict_json(tmp_path):
    import ml_collections

    config = ml_collections.ConfigDict({"steps": 3})
    kw = dict(paper="demo", config=config, claim="c", verdict="v", wall_seconds=1.0)
    with pytest.raises(ValueError, match=r"metrics\.ratio\.value is nan"):
        metrics_lib.write_results(
            str(tmp_path), metrics={"ratio": metrics_lib.metric(np.nan, "x")}, **kw
        )
    with pytest.raises(ValueError, match=r"tables\.rows\[1\]\.loss is inf"):
        metrics_lib.write_results(
            str(tmp_path),
            metrics={},
            tables={"rows": [{"loss": 1.0}, {"loss": float("inf")}]},
            **kw,
        )
    assert not os.path.exists(tmp_path / "results.json")
    late = metrics_lib.metric("not reached within 30 s", "x")
    path = metrics_lib.write_results(str(tmp_path), metrics={"ratio": late}, **kw)
    assert metrics_lib.read_results(path)["metrics"]["ratio"]["value"] == (
        "not reached within 30 s"
    )
    text = pathlib.Path(path).read_text()
    pathlib.Path(path).write_text(text.replace('"not reached within 30 s"', "NaN"))
    with pytest.raises(ValueError, match="results.json is not valid JSON"):
        metrics_lib.read_results(path)


def test_committed_results_files_are_strict_json():
    root = os.path.join(os.path.dirname(__file__), "..", "..", "benchmarks", "results")
    paths = sorted(glob.glob(os.path.join(root, "*.json")))
    assert paths
    for path in paths:
        with open(path) as f:
            json.loads(f.read(), parse_constant=_refuse)


def _refuse(name):
    raise ValueError(f"{name} in a committed results file")
