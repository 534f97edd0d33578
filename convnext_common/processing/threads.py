"""The thread pools that spread a batch's images over the CPUs (PIL releases the GIL while resizing)."""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor

_POOL_LOCK = threading.Lock()
_POOLS: dict[tuple[int, int], ThreadPoolExecutor] = {}

#: at most this many threads by default: beyond it a batch's images are too few to gain more.
MAX_DEFAULT_THREADS = 8


def thread_pool(n: int) -> ThreadPoolExecutor:
    """A shared pool of ``n`` threads, per process: a forked child (e.g. a DataLoader worker)
    inherits the parent's pool objects without their threads, so it makes its own."""
    key = (os.getpid(), n)
    with _POOL_LOCK:
        if key not in _POOLS:
            _POOLS[key] = ThreadPoolExecutor(n, thread_name_prefix="convnext-preprocess")
        return _POOLS[key]


def default_threads() -> int:
    """The CPUs this process may run on, at most :data:`MAX_DEFAULT_THREADS`."""
    try:
        n = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        n = os.cpu_count() or 1
    return max(1, min(MAX_DEFAULT_THREADS, n))
