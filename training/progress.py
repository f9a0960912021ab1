"""Progress messages for the slow steps of a run, so a long silence has a name and, once over, a length.
Torch-free: the data readers use it too."""
from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def timed(logger: logging.Logger, what: str) -> Iterator[list[str]]:
    """Log `what ...` before the block and `what: done in 1.2 s` after it (nothing after if it raises).
    Strings the block appends to the yielded list are added to the second line, e.g. a count found on the way."""
    logger.info("%s ...", what)
    started, notes = time.perf_counter(), []
    yield notes
    logger.info("%s: done in %s%s", what, duration(time.perf_counter() - started),
                f" ({', '.join(notes)})" if notes else "")


def duration(seconds: float) -> str:
    """Seconds for people: '0.4 s', '42 s', '3m05s', '1h02m'."""
    if seconds < 10:
        return f"{seconds:.1f} s"
    whole = round(seconds)
    if whole < 60:
        return f"{whole} s"
    minutes, secs = divmod(whole, 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"
