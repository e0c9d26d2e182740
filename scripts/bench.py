"""Benchmark: attention overhead, framework overhead, bank construction and data loading.

    python scripts/bench.py                 # CPU, the issue's sizes, a table
    python scripts/bench.py --json          # one JSON object on stdout
    python scripts/bench.py --device cuda   # on a GPU (bf16-mixed, like trainer=gpu)
    python scripts/bench.py --quick         # tiny sizes (a smoke test, not a measurement)
    python scripts/bench.py --parts attention --backbones resnet --timm vit_tiny_patch16_224 vit_small_patch16_224
                                            # any timm model's step with global attention vs none
    python scripts/bench.py --device cuda --parts grid --json   # the paper's settings: framework vs bare
                                            # loops (eager, compiled) per backbone, the grid's hours
    python scripts/bench.py --device cuda --parts concurrency --jobs 2   # 2 jobs sharing the GPU vs 1

Every comparison runs its variants interleaved in this process and reports the median of
the per-round ratios, so a busy machine slows both sides alike. Progress goes to stderr.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import warnings
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("GSA_EXP_ROOT", str(ROOT))

from gsa_exp.benchmark.suite import ATTENTIONS, BACKBONES, DEFAULT_PARTS, PARTS, Settings, format_table, run_suite  # noqa: E402


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    parser.add_argument(
        "--precision", choices=("32-true", "bf16-mixed"), help="default: 32-true on CPU, bf16-mixed on CUDA"
    )
    parser.add_argument("--quick", action="store_true", help="tiny sizes and one or two rounds (for tests)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    parser.add_argument("--backbones", nargs="+", choices=BACKBONES, default=list(Settings().backbones))
    parser.add_argument(
        "--timm",
        nargs="*",
        default=list(Settings().timm_variants),
        help="timm models measured too, as backbone=timm backbone.variant=NAME (none: --timm alone)",
    )
    parser.add_argument(
        "--attentions",
        nargs="+",
        choices=ATTENTIONS,
        default=list(Settings().attentions),
        help="attention variants whose step and eval times are also compared with attention=none (global always is)",
    )
    parser.add_argument(
        "--parts", nargs="+", choices=PARTS, default=list(DEFAULT_PARTS), help=f"default: {' '.join(DEFAULT_PARTS)}"
    )
    parser.add_argument("--rounds", type=int, help="interleaved rounds of the ResNet-18 step figures")
    parser.add_argument("--calls", type=int, help="steps timed together per sample (default 1 on CPU, 10 on CUDA)")
    parser.add_argument("--jobs", type=int, default=2, help="concurrency part: jobs sharing the device at once")
    parser.add_argument("--channels-last", action="store_true", help="performance.channels_last=true for every model")
    parser.add_argument("--compile", action="store_true", help="performance.compile=true for every model")
    return parser.parse_args(argv)


def settings_from(args: argparse.Namespace) -> Settings:
    base = Settings.quick_settings() if args.quick else Settings()
    cuda = args.device.startswith("cuda")
    changes: dict = {
        "device": args.device,
        "precision": args.precision or ("bf16-mixed" if cuda else "32-true"),
        "backbones": tuple(args.backbones),
        "timm_variants": tuple(args.timm),
        "attentions": tuple(args.attentions),
        "parts": tuple(args.parts),
        "concurrent_jobs": args.jobs,
        "extra_overrides": tuple(
            f"performance.{key}=true"
            for key, on in (("channels_last", args.channels_last), ("compile", args.compile))
            if on
        ),
    }
    if cuda:  # fast steps: ten per timed sample; a longer epoch (512 steps) with the GPU trainer config
        epoch_data = base.epoch_overrides if args.quick else ("dataset.source.num_train=16384",)
        changes.update(calls=10, epoch_overrides=(*epoch_data, "trainer=gpu"))
        if not args.quick:
            changes["backbone_rounds"] = 5
    if args.rounds:
        changes["step_rounds"] = args.rounds
    if args.calls:
        changes["calls"] = args.calls
    return replace(base, **changes)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    settings = settings_from(args)
    warnings.filterwarnings("ignore", module="pytorch_lightning")
    warnings.filterwarnings("ignore", module="lightning")
    start = time.perf_counter()

    def progress(message: str) -> None:
        print(f"[bench {time.perf_counter() - start:7.1f} s] {message}", file=sys.stderr, flush=True)

    results = run_suite(settings, progress=progress)
    progress("done")
    print(json.dumps(results, indent=2) if args.json else format_table(results))


if __name__ == "__main__":
    main()
