"""The fastest exact way to train many CPU runs: images per second of each way of using the cores, side by side.

    python benchmarks/bench_cpu_campaign.py                    # about 5 minutes on 2 cores
    python benchmarks/bench_cpu_campaign.py --window 3 --reps 1 --warmup 1   # a quick check that it runs

The CPU replication (``results/cpu-replication/``) trains about 20 runs of the 20-layer "Ours" v2 W x 1
network (swapout, Linear(1, 0.5)) at batch 128 with the paper's recipe, in float32 and eagerly: the
training step of ``swapout train`` on the CPU, nothing approximated. The question is only how to spend
the cores. Each contender is a set of fresh processes, each training its own run on synthetic
CIFAR-sized data with the same input pipeline and step as ``swapout train`` (the figures read back at
every step, as the CPU loop does), timed over the same window of wall time after a warm-up:

- ``1 run x all threads``: one process using every core (``swapout train``'s default);
- ``N runs x 1 thread``: one process per core, side by side (``swapout sweep --per-gpu N`` on the CPU);
- ``1 run x all threads, NCHW``: the first, with the network in NCHW instead of channels-last;
- ``pack of N x all threads``: N runs packed into one network of grouped layers (``swapout sweep --pack N``).

Contenders run in turn, ``--reps`` rounds, so that they share the machine's moods; a figure is the
median over rounds, and each ratio is against ``1 run x all threads`` in the same round. Absolute
images per second on a shared machine are noise; the ratios are the result. Written to
``results/benchmarks/cpu_campaign.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path
from typing import Dict, List

import torch

from bench_pack import make_runner
from bench_train_gpu import BATCH, side_by_side

OUT = Path(__file__).resolve().parent.parent / "results" / "benchmarks" / "cpu_campaign.json"


def _worker(rank: int, runs: int, channels_last: bool, threads: int, args, barrier, results) -> None:
    """Train ``runs`` packed runs (1: a plain one) on ``threads`` threads; images per second over the window."""
    torch.set_num_threads(threads)
    run = make_runner("w1", runs, torch.device("cpu"), channels_last, compile=False, images=args.images)

    def steps(n: int) -> None:
        for _ in range(n):
            run(1)
            run.step.read()  # the CPU loop reads its figures back at every step

    steps(args.warmup)
    barrier.wait(600)  # every process of a contender timed over the same stretch of wall time
    start, done = time.perf_counter(), 0
    while time.perf_counter() - start < args.window:
        steps(1)
        done += 1
    results[rank] = runs * BATCH * done / (time.perf_counter() - start)


def contenders(cores: int) -> Dict[str, tuple]:
    """name: (processes, runs per process, channels-last, threads per process)."""
    return {
        f"1 run x {cores} threads": (1, 1, True, cores),
        f"{cores} runs x 1 thread": (cores, 1, True, 1),
        f"1 run x {cores} threads, NCHW": (1, 1, False, cores),
        f"pack of {cores} x {cores} threads": (1, cores, True, cores),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--window", type=float, default=25.0, help="seconds each contender is timed per round")
    parser.add_argument("--warmup", type=int, default=3, help="steps before timing")
    parser.add_argument("--reps", type=int, default=2, help="rounds over the contenders")
    parser.add_argument("--images", type=int, default=10_000, help="synthetic images per run")
    parser.add_argument("--out", type=Path, default=OUT, help="where the JSON goes")
    args = parser.parse_args()
    if args.window <= 0 or args.warmup < 0 or args.reps < 1 or args.images < BATCH:
        parser.error(f"--window must be > 0, --warmup >= 0, --reps >= 1 and --images >= {BATCH}")
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    plan = contenders(cores)
    rates: Dict[str, List[float]] = {name: [] for name in plan}
    began = time.time()
    for rep in range(args.reps):
        for name, (procs, runs, channels_last, threads) in plan.items():
            rate = side_by_side(procs, _worker, runs, channels_last, threads, args)
            rates[name].append(rate)
            print(f"round {rep + 1}/{args.reps}  {name:<28} {rate:7.1f} images/s", flush=True)
    base = list(plan)[0]
    rows = []
    for name, (procs, runs, channels_last, threads) in plan.items():
        ratio = statistics.median(r / b for r, b in zip(rates[name], rates[base]))
        rows.append({"contender": name, "processes": procs, "runs_per_process": runs, "threads_per_process": threads,
                     "layout": "channels_last" if channels_last else "nchw",
                     "images_per_s": round(statistics.median(rates[name]), 1),
                     "images_per_s_each_round": [round(r, 1) for r in rates[name]],
                     "over_one_run_all_threads": round(ratio, 3)})
    best = max(rows, key=lambda r: r["over_one_run_all_threads"])
    print(f"\n{'contender':<30} {'images/s':>9} {'ratio':>7}")
    for row in rows:
        print(f"{row['contender']:<30} {row['images_per_s']:>9.1f} {row['over_one_run_all_threads']:>7.3f}")
    print(f"\nfastest: {best['contender']} ({best['over_one_run_all_threads']:.3f}x one run on all {cores} threads); "
          f"{time.time() - began:.0f} s")
    record = {"what": "20-layer Ours v2 W x 1, swapout Linear(1, 0.5), batch 128, float32, eager",
              "torch": torch.__version__, "cpu": platform.processor() or platform.machine(), "cores": cores,
              "cpu_capability": torch.backends.cpu.get_cpu_capability(), "window_s": args.window,
              "warmup_steps": args.warmup, "reps": args.reps, "contenders": rows, "fastest": best["contender"]}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=2) + "\n")
    # relative, so that the output committed beside the JSON names no machine's directories
    print(f"written to {os.path.relpath(args.out)}")


if __name__ == "__main__":
    main()
