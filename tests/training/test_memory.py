import resource
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = str(Path(__file__).resolve().parents[2])
SCRIPT = """
import ctypes, resource, sys
sys.path.insert(0, {root!r})
from training.memory import keep_freed_memory
if {keep}:
    assert keep_freed_memory()
libc = ctypes.CDLL("libc.so.6")
libc.malloc.restype, libc.free.argtypes = ctypes.c_void_p, [ctypes.c_void_p]
def touch(size=64 << 20):  # 64 MiB: above glibc's default mmap threshold
    block = libc.malloc(size)
    ctypes.memset(block, 1, size)
    libc.free(block)
touch()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
touch()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def page_faults_of_a_second_64mib_block(keep: bool) -> int:
    out = subprocess.run([sys.executable, "-c", SCRIPT.format(root=ROOT, keep=keep)], capture_output=True, text=True,
                         check=True)
    return int(out.stdout.strip())


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt is Linux-only")
def test_a_freed_block_is_reused_instead_of_faulted_in_again():
    pages = (64 << 20) // resource.getpagesize()
    assert page_faults_of_a_second_64mib_block(keep=False) > pages // 2  # glibc gave the block back
    assert page_faults_of_a_second_64mib_block(keep=True) < pages // 20  # kept and reused
