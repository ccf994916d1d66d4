"""`retain_freed_memory`: memory one thread frees is reused by the next without page faults.

Each check runs in a fresh interpreter: the allocator's settings last for the
whole process, and the premise (glibc's defaults fault in fresh pages) is
checked alongside, so the test shows the setting is what makes the difference."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

_LIBC = """
import json, resource, sys, threading
from veilcam.daemon.memory import _libc
libc = _libc()  # with its malloc, memset and free prototypes
"""

_PROBE = _LIBC + """
from veilcam.daemon.memory import retain_freed_memory
tuned = retain_freed_memory() if sys.argv[1] == "tuned" else None
SIZE = 24 << 20  # as a renderer's textures and framebuffers (numpy itself asks for huge pages)
def first():
    block = libc.malloc(SIZE); libc.memset(block, 1, SIZE); libc.free(block)  # an avatar retired
faults = {}
def second():
    before = resource.getrusage(resource.RUSAGE_THREAD).ru_minflt
    block = libc.malloc(SIZE); libc.memset(block, 2, SIZE)  # the next one built, on another thread
    faults["n"] = resource.getrusage(resource.RUSAGE_THREAD).ru_minflt - before
for target in (first, second):
    t = threading.Thread(target=target); t.start(); t.join()
print(json.dumps({"tuned": tuned, "faults": faults["n"], "pages": SIZE // resource.getpagesize()}))
"""


def _probe(script: str, mode: str) -> dict:
    out = subprocess.run([sys.executable, "-c", script, mode], capture_output=True, text=True, timeout=60, check=True)
    return json.loads(out.stdout)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's allocator: Linux")
def test_a_block_freed_by_one_thread_is_reused_by_the_next_without_faulting():
    default = _probe(_PROBE, "default")
    tuned = _probe(_PROBE, "tuned")
    assert tuned["tuned"] is True
    assert default["faults"] > default["pages"] // 2  # the premise: by default the pages come fresh
    assert tuned["faults"] < tuned["pages"] // 20


_FIRST_BUILD = _LIBC + """
from veilcam.daemon.memory import reserve_heap, retain_freed_memory
retain_freed_memory()
reserved = again = 0
if sys.argv[1] == "reserved":
    reserved = reserve_heap(32 << 20)
    again = reserve_heap(16 << 20)  # no more than is there already: nothing to do
SIZE = 6 << 20
faults = {}
def build():  # the first avatar build of a process: three textures and framebuffers
    before = resource.getrusage(resource.RUSAGE_THREAD).ru_minflt
    for _ in range(3):
        block = libc.malloc(SIZE); libc.memset(block, 1, SIZE)
    faults["n"] = resource.getrusage(resource.RUSAGE_THREAD).ru_minflt - before
t = threading.Thread(target=build); t.start(); t.join()
print(json.dumps({"reserved": reserved, "again": again, "faults": faults["n"], "pages": 3 * SIZE // resource.getpagesize()}))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's allocator: Linux")
def test_a_reserved_heap_spares_the_first_build_its_page_faults():
    plain, reserved = _probe(_FIRST_BUILD, "plain"), _probe(_FIRST_BUILD, "reserved")
    assert plain["faults"] > plain["pages"] // 2  # nothing retired yet: fresh pages
    assert reserved["reserved"] == 32 << 20 and reserved["again"] == 0
    assert reserved["faults"] < reserved["pages"] // 20
