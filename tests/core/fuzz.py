"""Helpers of the loaders' fuzz tests: mutations, a hard time limit, the oracle.

Each fuzz test writes valid files, then loads copies with one mutation drawn
by hypothesis: the file cut at a random length, or one byte replaced (XOR
with a random non-zero value). The loader must, within a time limit, either
raise ``ValueError`` / ``FileNotFoundError`` or return data that agrees with
what was written:

* after a cut, exactly what was written (a loader may only accept a cut that
  removes nothing it returns, such as a final newline);
* after a byte change, every record the changed byte does not belong to is
  exactly as written, and the records are neither shifted, dropped nor
  invented. The record holding the byte may differ: a changed digit inside a
  stored number is a different, equally valid number, which no loader can
  tell from the original unless the format carries a checksum (gzip, zip and
  PNG do; for those the tests demand exact data too).

``record_of`` maps a byte offset to the record it belongs to, from the byte
spans the test recorded while writing.
"""

from __future__ import annotations

import bisect
import contextlib
import os
import signal
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

# Set to a number of examples to search longer, with fresh random draws.
SEARCH_ENV = "JAXSUITE_FUZZ_SEARCH"


def examples(n: int) -> settings:
    """Settings of a fuzz test running ``n`` examples (the same ones every run,
    so CI is reproducible; ``$JAXSUITE_FUZZ_SEARCH=N`` draws N fresh ones).

    Choose ``n`` so that all fuzz tests together stay within about a minute on
    2 CPU cores.
    """
    search = os.environ.get(SEARCH_ENV)
    return settings(
        max_examples=int(search) if search else n,
        deadline=5000,
        database=None,
        derandomize=not search,
        suppress_health_check=[
            HealthCheck.function_scoped_fixture,
            HealthCheck.too_slow,
        ],
    )


TIME_LIMIT = 10.0  # seconds one load may take before it counts as a hang
LOAD_ERRORS = (ValueError, FileNotFoundError)


def mutations(size: int) -> st.SearchStrategy[tuple]:
    """``("cut", n)`` keeps the first ``n < size`` bytes; ``("flip", i, x)`` XORs
    byte ``i`` with ``x`` (1-255)."""
    cut = st.integers(0, size - 1).map(lambda n: ("cut", n))
    flip = st.tuples(st.just("flip"), st.integers(0, size - 1), st.integers(1, 255))
    return st.one_of(cut, flip)


def apply(data: bytes, mutation: tuple) -> bytes:
    """``data`` with ``mutation`` applied."""
    if mutation[0] == "cut":
        return data[: mutation[1]]
    _, i, x = mutation
    return data[:i] + bytes([data[i] ^ x]) + data[i + 1 :]


@contextlib.contextmanager
def time_limit(seconds: float = TIME_LIMIT) -> Iterator[None]:
    """Raises ``TimeoutError`` in the block after ``seconds`` (a hang)."""

    def fire(signum, frame):
        del signum, frame
        raise TimeoutError(f"the loader ran for more than {seconds} s (a hang)")

    previous = signal.signal(signal.SIGALRM, fire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def load(fn: Callable[[], Any]) -> tuple[str, Any]:
    """``("ok", value)`` or ``("error", exception)`` for the allowed errors.

    Any other exception, or running past :data:`TIME_LIMIT`, fails the test.
    """
    with time_limit():
        try:
            return "ok", fn()
        except LOAD_ERRORS as e:
            assert str(e), "an error without a message"
            return "error", e


def record_of(spans: Sequence[tuple[int, int]], offset: int) -> int | None:
    """Index of the span ``[start, end)`` holding ``offset`` (spans sorted), or
    None (the offset is in no record: a header or a separator)."""
    starts = [s for s, _ in spans]
    i = bisect.bisect_right(starts, offset) - 1
    if i >= 0 and spans[i][0] <= offset < spans[i][1]:
        return i
    return None


def check_records(
    got: Sequence[Any],
    want: Sequence[Any],
    touched: int | None,
    equal: Callable[[Any, Any], bool],
    what: str,
) -> None:
    """Same number of records; each one except ``touched`` equal to what was
    written."""
    assert len(got) == len(want), f"{what}: {len(got)} records, wrote {len(want)}"
    for i, (a, b) in enumerate(zip(got, want)):
        if i != touched:
            assert equal(a, b), f"{what} record {i} changed: {a!r} != {b!r}"
