"""malloc upkeep for long inference: free heap pages go back to the system past a threshold."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

SCENARIO = textwrap.dedent(
    """
    import numpy as np
    from sed.utils.memory import heap_free_bytes, release_free_memory

    def rss_mb():
        for line in open("/proc/self/status"):
            if line.startswith("VmRSS"):
                return int(line.split()[1]) / 1024

    a = np.ones(8 << 20, np.uint8)
    del a  # freeing an mmapped 8 MB block raises glibc's mmap threshold past 8 MB
    blocks = [np.ones(1 << 20, np.uint8) for _ in range(200)]  # now from the heap
    del blocks[::2]  # 100 MB free, fragmented: the heap top cannot shrink
    free_before, rss_before = heap_free_bytes() / 2**20, rss_mb()
    assert not release_free_memory(min_free_mb=1e6)  # under the threshold: nothing done
    trimmed = release_free_memory(min_free_mb=64)
    print(free_before, rss_before - rss_mb(), trimmed)
    """
)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc and /proc only")
def test_release_free_memory_returns_fragmented_heap_pages() -> None:
    from sed.utils.memory import heap_free_bytes

    if heap_free_bytes() is None:
        pytest.skip("not glibc >= 2.33")
    proc = subprocess.run(
        [sys.executable, "-c", SCENARIO], capture_output=True, text=True, check=True
    )
    free_mb, released_mb, trimmed = proc.stdout.split()
    assert float(free_mb) >= 90  # the scenario left ~100 MB free inside the heap
    assert trimmed == "True"
    assert float(released_mb) >= 80, proc.stdout  # and trimming gave it back
