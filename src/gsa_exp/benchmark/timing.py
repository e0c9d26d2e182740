"""Interleaved timing: the variants of a comparison alternate in one process (``timeit`` and ``torch.utils.benchmark``
time one after the other), so a noisy machine slows them alike and the ratio of their times stays meaningful."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Mapping

import torch


def synchronizer(device: torch.device) -> Callable[[], None]:
    """Waits for queued device work (CUDA kernels run asynchronously); a no-op on the CPU."""
    if device.type == "cuda":
        return lambda: torch.cuda.synchronize(device)
    return lambda: None


def interleaved_times(
    variants: Mapping[str, Callable[[], object]],
    *,
    rounds: int,
    warmup: int,
    calls: int = 1,
    sync: Callable[[], None] = lambda: None,
) -> dict[str, list[float]]:
    """Seconds per call of every variant, one sample per round and variant.

    Each round runs every variant once (``calls`` calls per sample), in the order given on
    even rounds and reversed on odd ones (A B, B A, ...), so neither variant always runs
    first after the other; ``warmup`` untimed rounds come first.
    """
    names = list(variants)
    for _ in range(warmup):
        for name in names:
            variants[name]()
    sync()
    samples: dict[str, list[float]] = {name: [] for name in names}
    for index in range(rounds):
        for name in names if index % 2 == 0 else reversed(names):
            function = variants[name]
            start = time.perf_counter()
            for _ in range(calls):
                function()
            sync()
            samples[name].append((time.perf_counter() - start) / calls)
    return samples


def paired_ratio(samples: Mapping[str, list[float]], numerator: str, denominator: str) -> float:
    """Median over rounds of numerator time / denominator time, each pair taken in the same round."""
    return statistics.median(a / b for a, b in zip(samples[numerator], samples[denominator], strict=True))
