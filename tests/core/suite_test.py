"""Tests for the suite runner and its report."""

import base64
import html
import pathlib
import textwrap

from jaxsuite.core import suite

ROOT = pathlib.Path(__file__).parents[2]


def _fake_repo(tmp_path):
    """A repository root with one launcher that works and one that crashes."""
    root = tmp_path / "repo"
    (root / "launch").mkdir(parents=True)
    (root / "configs").mkdir()
    (root / "launch" / "__init__.py").write_text("")
    (root / "launch" / "boom.py").write_text(
        "import sys\nprint('about to fail')\nsys.exit('boom: bad config')\n"
    )
    (root / "launch" / "good.py").write_text(
        textwrap.dedent(
            """
            import json, os, sys
            args = dict(a[2:].split("=", 1) for a in sys.argv[1:])
            workdir, preset = args["workdir"], args["config"].split(":", 1)[1]
            os.makedirs(workdir, exist_ok=True)
            res = {"paper": "good", "preset": preset,
                   "metrics": {"x": {"value": 2.5, "unit": "dB"}},
                   "tables": {"t": [{"a": 1, "b": 2.0}]}, "claim": "C",
                   "verdict": "measured V", "config": {}, "env": {},
                   "wall_seconds": 0.1}
            json.dump(res, open(os.path.join(workdir, "results.json"), "w"))
            """
        )
    )
    return root


def _entry(name):
    return {
        "name": name,
        "title": f"Title {name}",
        "package": "p",
        "claim": f"claim {name}",
    }


def test_failures_and_missing_launchers_are_reported_not_faked(tmp_path):
    root = _fake_repo(tmp_path)
    runs = [
        suite.run_paper(
            _entry(n), "smoke", str(tmp_path / "w" / n), timeout=60, root=str(root)
        )
        for n in ("good", "boom", "absent")
    ]
    assert [r.status for r in runs] == ["ok", "failed", "not implemented"]
    assert runs[0].results["metrics"]["x"]["value"] == 2.5
    assert "boom: bad config" in runs[1].error and "about to fail" in runs[1].error
    assert runs[2].results is None

    report = suite.write_report(runs, str(tmp_path / "w" / "report.md"), "smoke")
    text = pathlib.Path(report).read_text()
    for r in runs:
        assert f"`{r.name}`" in text
    assert "| x | 2.5 | dB |" in text and "measured V" in text
    assert "| a | b |" in text  # the paper's table
    assert "No launcher yet; nothing was run." in text
    assert "boom: bad config" in text


def test_existing_results_are_reused_unless_preset_differs(tmp_path):
    root = _fake_repo(tmp_path)
    wd = str(tmp_path / "w" / "good")
    first = suite.run_paper(_entry("good"), "smoke", wd, timeout=60, root=str(root))
    (root / "launch" / "good.py").write_text("import sys\nsys.exit(3)\n")
    again = suite.run_paper(_entry("good"), "smoke", wd, timeout=60, root=str(root))
    assert first.status == again.status == "ok"
    other = suite.run_paper(_entry("good"), "small", wd, timeout=60, root=str(root))
    assert other.status == "failed" and "Exit code 3" in other.error


def test_timeout_is_reported(tmp_path):
    root = _fake_repo(tmp_path)
    (root / "launch" / "slow.py").write_text("import time\ntime.sleep(30)\n")
    run = suite.run_paper(
        _entry("slow"), "smoke", str(tmp_path / "s"), timeout=1, root=str(root)
    )
    assert run.status == "timeout"


def test_suite_smoke_lists_every_paper(tmp_path, monkeypatch):
    """The real suite config: every paper and its claim appear in the report."""
    from configs import suite as suite_config

    config = suite_config.get_config("smoke")
    assert len(config.papers) == 8
    # From a root without launchers every paper is listed, none is run.
    (tmp_path / "root" / "launch").mkdir(parents=True)
    monkeypatch.chdir(tmp_path / "root")
    runs = suite.run(config, str(tmp_path / "suite"))
    assert all(r.status == "not implemented" for r in runs)
    text = (tmp_path / "suite" / "report.md").read_text()
    page = (tmp_path / "suite" / "report.html").read_text()
    for entry in suite_config.PAPERS:
        assert entry["claim"] in text
        assert html.escape(entry["claim"], quote=False) in page


def test_html_report_has_the_tables_and_embeds_the_figures(tmp_path):
    root = _fake_repo(tmp_path)
    wd = tmp_path / "w" / "good"
    run = suite.run_paper(_entry("good"), "smoke", str(wd), timeout=60, root=str(root))
    png = bytes.fromhex(
        "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
        "1f15c4890000000d49444154789c6360000002000001e221bc330000000049454e44ae426082"
    )
    (wd / "curve.png").write_bytes(png)
    suite.write_report([run], str(tmp_path / "w" / "report.md"), "smoke")
    page = (tmp_path / "w" / "report.html").read_text()
    assert page.startswith("<!DOCTYPE html>")
    assert "<table>" in page and "<td>measured V</td>" in page
    assert f"data:image/png;base64,{base64.b64encode(png).decode()}" in page
    assert "curve.png" not in page.replace('alt="curve.png"', "")


def test_first_sentence():
    assert suite.first_sentence("Reproduced: 2.1x. Details follow.") == (
        "Reproduced: 2.1x."
    )
    assert suite.first_sentence("no stop") == "no stop"
    assert len(suite.first_sentence("x" * 500, limit=50)) == 50


def test_markdown_table_union_of_columns():
    table = suite.markdown_table([{"a": 1}, {"b": 0.123456}])
    assert table.splitlines()[0] == "| a | b |"
    assert "| 1 |  |" in table and "|  | 0.1235 |" in table
