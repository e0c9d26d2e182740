"""Time and peak memory of one bank construction, measured in a fresh interpreter.

Run as ``python -m gsa_exp.benchmark.bank_probe IMAGES SIZE COMPONENTS``; a fresh process per
measurement keeps one build's freed memory from hiding the next one's peak. How the peak is
measured: docs/performance.md.
"""

from __future__ import annotations

import gc
import json
import resource
import sys
import time
from pathlib import Path

import torch

from gsa_exp.attention.bank import BankOptions, build_bank

_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")


def _status_bytes(field: str) -> int | None:
    try:
        for line in _STATUS.read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024  # reported in kB
    except OSError:
        return None
    return None


def _reset_peak() -> bool:
    try:
        _CLEAR_REFS.write_text("5")
    except OSError:
        return False
    return True


def _peak_bytes(reset: bool) -> int:
    peak = _status_bytes("VmHWM") if reset else None
    if peak is None:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # kB on Linux
    return peak


def bank_options(components: int | None) -> BankOptions:
    """Every image (no subset), standardised rows, the default chunk size."""
    return BankOptions(
        source="train", num_images=None, components=components, standardize=True, chunk_size=1024, seed=0
    )


def synthetic_images(count: int, size: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Grey uint8 images and ten balanced labels; content does not change the cost of building."""
    generator = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (count, 1, size, size), generator=generator, dtype=torch.uint8)
    return images, torch.arange(count) % 10


def measure(count: int, size: int, components: int | None) -> dict[str, float]:
    options = bank_options(components)
    warm_count = max(components or 1, 64) * 2
    build_bank(*synthetic_images(warm_count, size, seed=1), options)  # kernels and thread pools start up here
    images, labels = synthetic_images(count, size)
    gc.collect()
    reset = _reset_peak()
    before = _status_bytes("VmRSS") or 0
    start = time.perf_counter()
    bank = build_bank(images, labels, options)
    seconds = time.perf_counter() - start
    peak_extra = max(_peak_bytes(reset) - before, 0)
    return {
        "seconds": seconds,
        "peak_extra_bytes": float(peak_extra),
        "bank_bytes": float(bank.numel() * bank.element_size()),
        "raw_float_bytes": float(count * size * size * 4),
        "peak_reset": float(reset),
    }


def main(argv: list[str]) -> None:
    count, size, components = (int(value) for value in argv)
    print(json.dumps(measure(count, size, components or None)))


if __name__ == "__main__":
    main(sys.argv[1:])
