"""Child process of the crash tests: deletes samples, pausing where told.

python kill_worker.py RUN_DIR POINT SAMPLE [SAMPLE ...]

Before each deletion's step named POINT finishes returning (``validated``,
``logged``, ``applied``, ``committed``) it prints ``AT POINT`` and sleeps,
so the parent can SIGKILL it there; POINT ``none`` never pauses and prints
``DONE k`` after each deletion (for kills at random times).
"""

import sys
import time

from jaxsuite.unlearn import deletion


def main() -> None:
    run_dir, point, *samples = sys.argv[1:]

    def hook(step: str) -> None:
        if step == point:
            print(f"AT {step}", flush=True)
            time.sleep(600)

    with deletion.DeletionStore(run_dir) as store:
        for k, sample in enumerate(samples):
            store.delete(int(sample), on_step=hook)
            print(f"DONE {k}", flush=True)


if __name__ == "__main__":
    main()
