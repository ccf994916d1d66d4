"""Keep freed memory in the process, so an avatar switch reuses it instead of faulting in fresh pages.

A cold avatar build allocates tens of MB that are new to the process: its
textures, framebuffers, the baked atlas, the rig's arrays. With glibc's
defaults each thread gets its own malloc arena, blocks over the (dynamic) mmap
threshold are mapped fresh and unmapped on free, and freed heap tops are
trimmed: so every build touches new pages, and on a 2-core VM each page fault
costs 2-12 µs, up to ~50 ms for one texture upload. One arena that never
returns freed blocks to the system lets the next build take over the memory
the last retired avatar gave back, already mapped. The process keeps its
high-water mark (the soak benchmark watches RSS over time).
"""

from __future__ import annotations

import ctypes
import logging

log = logging.getLogger(__name__)

# glibc's mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_M_ARENA_MAX = -8
MMAP_THRESHOLD = 32 << 20  # glibc's largest: below it, blocks come from (and go back to) the heap
TRIM_THRESHOLD = 1 << 30  # free heap at the top is kept up to this much


def retain_freed_memory() -> bool:
    """Tune glibc's allocator as the module doc says; False where there is no glibc
    (macOS, Windows, musl), which then keeps its own allocator's behaviour.

    Call it at start-up, before threads allocate: arenas already made stay."""
    try:
        mallopt = ctypes.CDLL(None).mallopt  # the process's own symbols: libc's, where it is glibc
    except (OSError, TypeError, AttributeError):
        return False
    done = all(mallopt(param, value) == 1 for param, value in
               ((_M_ARENA_MAX, 1), (_M_MMAP_THRESHOLD, MMAP_THRESHOLD), (_M_TRIM_THRESHOLD, TRIM_THRESHOLD)))
    if not done:
        log.info("could not tune the memory allocator (mallopt refused); avatar switches may fault in more fresh memory")
    return done
