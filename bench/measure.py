"""What the harness measures around a method: wall time and peak resident memory."""
from __future__ import annotations

import resource
import sys
import time
from contextlib import contextmanager
from pathlib import Path

_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")


def _sync_accelerator() -> None:
    # Only when the method already imported torch: timing must include queued GPU work.
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        torch.cuda.synchronize()


@contextmanager
def timer():
    """``with timer() as t: ...`` then ``t()`` is the elapsed seconds (GPU work included)."""
    box = {"end": None}
    _sync_accelerator()
    start = time.perf_counter()

    def elapsed() -> float:
        return (box["end"] if box["end"] is not None else time.perf_counter()) - start

    try:
        yield elapsed
    finally:
        _sync_accelerator()
        box["end"] = time.perf_counter()


def reset_peak_rss() -> bool:
    """Restart the kernel's peak-RSS counter (Linux >= 4.0); False where that is not possible."""
    try:
        _CLEAR_REFS.write_text("5")
        return True
    except OSError:
        return False


def peak_rss_mb() -> float:
    """Peak resident memory of this process since the last `reset_peak_rss` (else since start), MB."""
    try:
        for line in _STATUS.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
