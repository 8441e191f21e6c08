"""Deletes training samples from a trained S3T run, by truncation (no training).

python -m launch.s3t_delete --workdir=runs/s3t --sample=17 [--sample=42 ...]

``--workdir`` is a run directory (it holds ``ledger.json``) or an experiment
workdir, in which case ``--run`` names the run under ``runs/`` (default: the
S3T run with the most sequences). Each deletion is durable once printed; an
unknown or already-deleted sample, a corrupted ledger or a missing stage
checkpoint stops with an error and changes nothing.
"""

import json
import os
import re

from absl import app, flags

from jaxsuite.unlearn import deletion, ledger

flags.DEFINE_string("workdir", None, "Run directory or experiment workdir.")
flags.DEFINE_multi_integer("sample", None, "Training sample id to delete.")
flags.DEFINE_string("run", None, "Run under WORKDIR/runs (default: largest-B S3T).")
flags.mark_flags_as_required(["workdir", "sample"])
FLAGS = flags.FLAGS


def run_directory(workdir: str, run: str | None) -> str:
    """The run directory that ``--workdir``/``--run`` name."""
    if os.path.exists(os.path.join(workdir, ledger.LEDGER_FILE)):
        return workdir
    runs_dir = os.path.join(workdir, "runs")
    if run is None:
        names = (
            [n for n in os.listdir(runs_dir) if re.fullmatch(r"s3t_B\d+", n)]
            if os.path.isdir(runs_dir)
            else []
        )
        if not names:
            raise FileNotFoundError(f"no S3T run under {workdir}")
        run = max(names, key=lambda n: int(n.split("B")[1]))
    return os.path.join(runs_dir, run)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    try:
        run_dir = run_directory(FLAGS.workdir, FLAGS.run)
        with deletion.DeletionStore(run_dir) as store:
            if store.recovered:
                print(f"recovered an interrupted deletion: {store.recovered}")
            if store.body["meta"]["method"] != "s3t":
                raise ValueError(f"{run_dir} is not an S3T run")
            for sample in FLAGS.sample:
                effect = store.delete(sample)
                print(json.dumps(effect))
            served = {s: (list(p) if p else None) for s, p in store.served().items()}
            print(json.dumps({"served": served}))
    except (ledger.LedgerError, FileNotFoundError, ValueError) as e:
        raise SystemExit(f"error: {e}") from None


if __name__ == "__main__":
    app.run(main)
