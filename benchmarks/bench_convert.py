"""What swapout.convert costs: a training step of torchvision's ResNet-18, converted against the original.

    python benchmarks/bench_convert.py [--reps 7] [--batch 128] [--stem cifar|imagenet] [--reference]

Forward, backward and SGD step on a batch of CIFAR-sized (32x32) random images. "cifar" (the default)
gives the network a 3x3 stride-1 stem without max-pooling, as CIFAR users do; "imagenet" keeps
torchvision's stem. The converted network has swapout with Linear(1, 0.5) at its 8 joins, and its
unit masks go through the fused CPU kernel; ``--reference`` adds the converted network with the
reference op (two ``torch.bernoulli`` masks) for comparison.

The contenders are timed in turn, one repetition each, in one process; the ratio is the median over
repetitions of the converted step's time over the original's, taken back to back, so that a slow spell
of a shared machine hits both alike. Absolute times are printed for context; the ratio is the result.
Needs torchvision (``pip install -e '.[interop]'``).
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import sys
import time
import types
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

import swapout
from swapout.kernels import fused

if torch.version.cuda is None:
    # torchvision from PyPI beside a CPU-only torch: its compiled operators need CUDA and its import
    # fails registering them; the models need none of them.
    sys.modules.setdefault("torchvision._meta_registrations", types.ModuleType("torchvision._meta_registrations"))
import torchvision


def resnet18(stem: str) -> nn.Module:
    model = torchvision.models.resnet18(num_classes=10)
    if stem == "cifar":
        model.conv1 = nn.Conv2d(3, 64, 3, stride=1, padding=1, bias=False)
        model.maxpool = nn.Identity()
    return model


def step_fn(model: nn.Module, x: torch.Tensor, y: torch.Tensor, fused_kernel: bool = True):
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4)
    model.train()

    def step() -> None:
        previous = fused.set_enabled(fused_kernel)
        try:
            opt.zero_grad(set_to_none=True)
            F.cross_entropy(model(x), y).backward()
            opt.step()
        finally:
            fused.set_enabled(previous)

    return step


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--reps", type=int, default=7)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--stem", choices=("cifar", "imagenet"), default="cifar")
    p.add_argument("--reference", action="store_true", help="also time the converted network with the reference op")
    p.add_argument("--json", default=None, help="write the figures to this file")
    args = p.parse_args()

    torch.manual_seed(0)
    original = resnet18(args.stem)
    converted = swapout.convert(copy.deepcopy(original))  # its own weights: the steps must not share them
    x, y = torch.randn(args.batch, 3, 32, 32), torch.randint(0, 10, (args.batch,))
    fns = {"original": step_fn(original, x, y), "converted": step_fn(converted, x, y)}
    if args.reference:
        fns["converted_reference_op"] = step_fn(swapout.convert(copy.deepcopy(original)), x, y, fused_kernel=False)
    if not fused.available(x):
        print("warning: no fused CPU kernel here (no C compiler): the converted network uses the reference op")

    for fn in fns.values():
        for _ in range(args.warmup):
            fn()
    times = {k: [] for k in fns}
    for _ in range(args.reps):
        for k, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - start)

    result = {
        "model": f"torchvision resnet18, {args.stem} stem, swapout Linear(1, 0.5) at its 8 joins",
        "batch": args.batch, "input": [3, 32, 32], "reps": args.reps, "threads": torch.get_num_threads(),
        "torch": torch.__version__, "torchvision": torchvision.__version__,
        "median_seconds": {k: round(statistics.median(v), 4) for k, v in times.items()},
        "ratio": {k: round(statistics.median(a / b for a, b in zip(v, times["original"])), 3)
                  for k, v in times.items() if k != "original"},
    }
    print(json.dumps(result, indent=2))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
