"""The C allocator's policy for this process (torch-free: the CLI sets it before importing torch)."""

from __future__ import annotations

import functools

# glibc's malloc hands allocations above its mmap threshold (128 KiB, raised only when such a block is freed,
# to at most 32 MiB) straight to the kernel and returns them on free, so every batch's larger activations
# (a 64-image batch at 160 px: ~26 MB for one bf16 map) are page-faulted and zero-filled afresh. Keeping them in
# the heap made batch prediction ~1.5× faster on the 2-core CPU (241–268 → 374–424 img/s, the bench's
# single-process path in a fresh process), at the price of up to MALLOC_KEEP of freed memory held by the process.
MALLOC_KEEP = 1 << 30  # bytes: mmap threshold and trim threshold
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD, _M_ARENA_MAX = -1, -3, -8  # mallopt parameters (malloc.h)


@functools.cache
def tune_malloc() -> bool:
    """Raise glibc's mmap and trim thresholds to ``MALLOC_KEEP`` for this process (once; the CLI calls it at start,
    each Ray actor in its constructor). False where the C library is not glibc (nothing changes)."""
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    # One arena: a thread's own arena grows in heaps of at most 64 MiB, and a block that does not fit one is
    # mmapped whatever the threshold (Ray Data calls an actor on another thread than its constructor).
    return all(bool(mallopt(param, value)) for param, value in
               ((_M_MMAP_THRESHOLD, MALLOC_KEEP), (_M_TRIM_THRESHOLD, MALLOC_KEEP), (_M_ARENA_MAX, 1)))
