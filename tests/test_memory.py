"""glibc's mmap threshold: fixed, large blocks stay outside the fragmenting heap."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

CHECK = textwrap.dedent(
    """
    import sys
    import numpy as np
    if sys.argv[1] == "fix":
        from sed.utils.memory import fix_mmap_threshold
        assert fix_mmap_threshold()

    def in_heap(addr):
        for line in open("/proc/self/maps"):
            if line.rstrip().endswith("[heap]"):
                a, b = (int(x, 16) for x in line.split()[0].split("-"))
                if a <= addr < b:
                    return True
        return False

    a = np.ones(4 << 20, np.uint8)
    del a  # freeing an mmapped 4 MB block raises glibc's dynamic threshold past 4 MB
    b = np.ones(4 << 20, np.uint8)
    print(in_heap(b.ctypes.data))
    """
)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc and /proc only")
def test_fixed_threshold_keeps_large_blocks_out_of_the_heap() -> None:
    def run(mode: str) -> str:
        proc = subprocess.run(
            [sys.executable, "-c", CHECK, mode], capture_output=True, text=True, check=True
        )
        return proc.stdout.strip()

    # without the fix the second 4 MB block comes from the heap (the glibc behaviour it fixes)
    assert run("no") == "True"
    assert run("fix") == "False"
