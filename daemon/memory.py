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

The first switches of a process have nothing retired to take over yet, so the
daemon also grows the heap once, at a quiet moment, by about what a build
allocates (`reserve_heap`): the first build of each look then runs as fast as
later ones (on the 2-core VM, 110-160 ms -> 42-55 ms uncontended). The reserve
stays resident (+64 MiB at 1280x720 until builds take it over), about the cost
of one more warm avatar.
"""

from __future__ import annotations

import ctypes
import logging
from functools import lru_cache

log = logging.getLogger(__name__)

# glibc's mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_M_ARENA_MAX = -8
MMAP_THRESHOLD = 32 << 20  # glibc's largest: below it, blocks come from (and go back to) the heap
TRIM_THRESHOLD = 1 << 30  # free heap at the top is kept up to this much


_state = {"retaining": False, "reserved": 0}
_RESERVE_BLOCK = 8 << 20  # under MMAP_THRESHOLD: such blocks are carved from the heap, and stay there once freed


@lru_cache(maxsize=1)
def _libc() -> ctypes.CDLL:
    """The process's own symbols (libc's), with the prototypes used here."""
    libc = ctypes.CDLL(None)
    libc.malloc.restype = ctypes.c_void_p
    libc.malloc.argtypes = [ctypes.c_size_t]
    libc.memset.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_size_t]
    libc.free.argtypes = [ctypes.c_void_p]
    return libc


def retain_freed_memory() -> bool:
    """Tune glibc's allocator as the module doc says; False where there is no glibc
    (macOS, Windows, musl), which then keeps its own allocator's behaviour.

    Call it at start-up, before threads allocate: arenas already made stay."""
    try:
        mallopt = _libc().mallopt  # glibc's only
    except (OSError, TypeError, AttributeError):
        return False
    done = all(mallopt(param, value) == 1 for param, value in
               ((_M_ARENA_MAX, 1), (_M_MMAP_THRESHOLD, MMAP_THRESHOLD), (_M_TRIM_THRESHOLD, TRIM_THRESHOLD)))
    if not done:
        log.info("could not tune the memory allocator (mallopt refused); avatar switches may fault in more fresh memory")
    _state["retaining"] = done
    return done


def build_reserve_bytes(width: int, height: int) -> int:
    """About what an avatar build allocates at this output size: its framebuffers
    and frame copies (~8 RGBA frames) plus the atlas, rig and mesh (~32 MB)."""
    return 8 * 4 * width * height + (32 << 20)


def reserve_heap(size: int) -> int:
    """Fault in and free `size` bytes of heap (once per process; more only if a larger
    size is asked), so the next builds find mapped memory; the bytes it touched.
    Does nothing unless `retain_freed_memory` took effect: freed blocks would go back."""
    if not _state["retaining"] or size <= _state["reserved"]:
        return 0
    libc = _libc()
    blocks = []
    try:
        for _ in range(-(-size // _RESERVE_BLOCK)):  # all held at once, so the heap grows by the whole size
            block = libc.malloc(_RESERVE_BLOCK)
            if not block:
                break
            libc.memset(block, 0, _RESERVE_BLOCK)
            blocks.append(block)
    finally:
        for block in blocks:
            libc.free(block)
    added = len(blocks) * _RESERVE_BLOCK
    _state["reserved"] = max(_state["reserved"], added)
    return added
