"""Keep memory that torch frees inside the process, for the next batch to reuse.

By default glibc's malloc hands large blocks straight back to the kernel when they are freed (anything
above its mmap threshold, and free space at the top of the heap), so every training step faults the
same hundreds of megabytes in again. On the VMs we run on, a page fault is expensive: a ConvNCF
full-sort pass spent 30-70% of its time in the kernel. Raising both thresholds keeps the blocks for
reuse: measured 1.3-1.9x faster training steps for ConvNCF, GRU4RecF and BERT4Rec, and 3x faster first
full sort. It does what `MALLOC_MMAP_THRESHOLD_` / `MALLOC_TRIM_THRESHOLD_` would do before start-up, and
what PyTorch's CPU tuning guide gets from jemalloc or tcmalloc.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import logging
import sys

log = logging.getLogger(__name__)

M_TRIM_THRESHOLD = -1  # glibc's mallopt parameter numbers (malloc.h)
M_MMAP_THRESHOLD = -3

_applied = False


def keep_freed_memory(mmap_threshold: int = 1 << 30, trim_threshold: int = 1 << 30) -> bool:
    """Raise glibc's mmap and trim thresholds (bytes). True when glibc took both; False on other C
    libraries and platforms, where nothing changes. Safe to call more than once."""
    global _applied
    if _applied:
        return True
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    _applied = bool(mallopt(M_MMAP_THRESHOLD, mmap_threshold)) and bool(mallopt(M_TRIM_THRESHOLD, trim_threshold))
    if not _applied:
        log.debug("mallopt refused the thresholds; freed memory goes back to the kernel as usual")
    return _applied
