"""Tests for starting cooperating processes on localhost."""

import pytest

from jaxsuite.core import multihost

SCRIPT = """
import sys
args = dict(a[2:].split("=", 1) for a in sys.argv[1:])
print("flags", sorted(args))
if args["process_id"] == args.get("fail_on"):
    sys.exit("process " + args["process_id"] + " gives up")
open("out_" + args["process_id"], "w").write(args["coordinator_address"] + " "
     + args["num_processes"] + " " + args["local_device_count"])
"""


def test_every_process_gets_its_id_and_the_shared_coordinator(tmp_path):
    script = tmp_path / "w.py"
    script.write_text(SCRIPT)
    out = multihost.run_local_processes(
        script, run_dir=tmp_path / "run", num_processes=3, devices_per_process=2
    )
    lines = [(out / f"out_{i}").read_text().split() for i in range(3)]
    assert len({line[0] for line in lines}) == 1  # one coordinator address
    assert lines[0][0].startswith("127.0.0.1:")
    assert all(line[1:] == ["3", "2"] for line in lines)


def test_a_failing_process_raises_with_every_log(tmp_path):
    script = tmp_path / "w.py"
    script.write_text(SCRIPT)
    with pytest.raises(multihost.LocalProcessesError) as err:
        multihost.run_local_processes(
            script, ["--fail_on=1"], run_dir=tmp_path / "run", timeout=30
        )
    text = str(err.value)
    assert "process 1 gives up" in text and "--- process 0" in text


def test_worker_env_drops_topology_overrides(monkeypatch):
    monkeypatch.setenv("JAXSUITE_PROCESS_ID", "3")
    monkeypatch.setenv("XLA_FLAGS", "--xla_force_host_platform_device_count=8 --x=1")
    env = multihost.worker_env()
    assert "JAXSUITE_PROCESS_ID" not in env
    assert env["XLA_FLAGS"] == "--x=1" and env["JAX_PLATFORMS"] == "cpu"
