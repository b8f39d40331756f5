"""Packed runs against solo runs: images per second of G runs trained as one packed network.

    python benchmarks/bench_pack.py                                   # on the GPU (about 6 minutes)
    python benchmarks/bench_pack.py --device cpu --networks w1 --packs 1,2,4 --steps 3 --warmup 1 \
        --reps 2 --side-by-side 2                                     # the CPU, small

For each network (20-layer "Ours" v2 W x 1 and W x 2, 32-layer W x 4, swapout with Linear(1, 0.5),
batch 128 per run) and each G of ``--packs``: a training step of G runs packed into one network
(:mod:`swapout.training.packing`), fed by G on-device input pipelines as ``swapout sweep --pack`` trains it,
against one solo run (G = 1: the plain network), timed in the same process in alternating blocks.
On a GPU each contender is the fast path (bf16, ``torch.compile`` with CUDA graphs), and a packed
network is tried in both memory layouts, NCHW and channels-last, because grouped convolutions have
slow cuDNN paths in some (pytorch issue 34977); the faster is reported, as the training path uses.
Then G solo processes side by side (``--side-by-side``), the alternative to packing: aggregate
images per second over the same stretch of wall time. Last, the projected time of Table 1's 30
full-recipe runs (12 at W x 1, 18 at W x 2) at the best G measured.

Absolute times on a shared machine are noise; the ratios are the result. The figures are written to
``results/benchmarks/pack_<device>.json``.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path
from typing import Callable, Dict, List

import numpy as np
import torch

import swapout
from bench_train_gpu import BATCH, EPOCHS, MEAN, STD, STEPS_PER_EPOCH, alternating, side_by_side, timed
from swapout.training.packing import pack
from swapout.data.pipeline import TrainLoader
from swapout.training.step import TrainStep

NETWORKS = {"w1": (20, 1), "w2": (20, 2), "32-w4": (32, 4)}  # name: (depth, width)
TABLE1_RUNS = {"w1": 12, "w2": 18}  # Table 1: 4 rows at W x 1 and 6 at W x 2, 3 seeds each


def make_runner(name: str, runs: int, device: torch.device, channels_last: bool) -> Callable[[int], None]:
    """A function that trains ``runs`` packed runs of ``name`` for n steps on synthetic CIFAR-sized data."""
    depth, width = NETWORKS[name]
    models = []
    for seed in range(runs):
        torch.manual_seed(seed)
        models.append(swapout.create_model("resnet_v2_ours", depth=depth, width=width, method="swapout").to(device))
    model = models[0] if runs == 1 else pack(models)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (50_000, 32, 32, 3), dtype=np.uint8)
    labels = rng.integers(0, 10, 50_000)
    loaders = [TrainLoader(images, labels, BATCH, MEAN, STD, device, 0)]
    loaders += [TrainLoader(loaders[0].images, labels, BATCH, MEAN, STD, device, s) for s in range(1, runs)]
    cuda = device.type == "cuda"
    step = TrainStep(model, opt, device, precision="bf16" if cuda else "fp32", compile=cuda, runs=runs,
                     channels_last=channels_last)
    state = {"epoch": 0, "batches": iter(())}

    def next_batch():
        try:
            return next(state["batches"])
        except StopIteration:
            parts = zip(*(loader.batches(state["epoch"]) for loader in loaders))
            state["batches"] = ((torch.cat([x for x, _ in p], 1), torch.stack([y for _, y in p], 1)) for p in parts)
            state["epoch"] += 1
            return next(state["batches"])

    def run(n: int) -> None:
        for _ in range(n):
            step(*next_batch())
    return run


def compare(name: str, runs: int, args, device: torch.device) -> Dict[str, float]:
    """One packed contender (the faster layout on a GPU) against a solo run, in alternating blocks."""
    layouts = [False, True] if device.type == "cuda" and runs > 1 else [device.type == "cuda"]
    best = None
    for channels_last in layouts:
        contenders = {"solo": make_runner(name, 1, device, device.type == "cuda"),
                      "packed": make_runner(name, runs, device, channels_last)}
        times = alternating(contenders, args, device)
        # images per second of the pack over one solo run: G * t_solo / t_packed, median over blocks
        gain = statistics.median(runs * s / p for s, p in zip(times["solo"], times["packed"]))
        row = {"network": name, "runs": runs, "layout": "channels_last" if channels_last else "nchw",
               "solo_ms_per_step": round(1000 * statistics.median(times["solo"]), 3),
               "packed_ms_per_step": round(1000 * statistics.median(times["packed"]), 3),
               "packed_images_per_s": round(runs * BATCH / statistics.median(times["packed"])),
               "packed_over_solo": round(gain, 3)}
        print(f"  {name} G={runs} {row['layout']}: {row['packed_ms_per_step']} ms/step, "
              f"{row['packed_images_per_s']:,} images/s, {gain:.2f}x one solo run", flush=True)
        if best is None or gain > best["packed_over_solo"]:
            best = row
    return best


def _worker(rank: int, name: str, args, device_name: str, barrier, results) -> None:
    device = torch.device(device_name)
    if device.type == "cpu":
        torch.set_num_threads(max(1, args.threads // args.concurrent_now))
    run = make_runner(name, 1, device, device.type == "cuda")
    run(args.warmup)
    barrier.wait()  # every process timed over the same stretch of wall time
    results[rank] = BATCH / timed(run, args.steps * args.reps, device)


def solo_processes(name: str, n: int, args, device: torch.device) -> float:
    """Aggregate images per second of ``n`` solo processes training ``name`` at once."""
    args.concurrent_now = n
    return side_by_side(n, _worker, name, args, str(device))


def _numbers(text: str) -> List[int]:
    return [int(v) for v in text.split(",") if v.strip()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--networks", default=",".join(NETWORKS), help=f"comma-separated, of {', '.join(NETWORKS)}")
    parser.add_argument("--packs", default="1,2,4,8,16,32", help="numbers of packed runs G")
    parser.add_argument("--side-by-side", default="2,4,8", help="numbers of solo processes at once (W x 1 only)")
    parser.add_argument("--steps", type=int, default=30, help="steps per timed block")
    parser.add_argument("--warmup", type=int, default=10, help="steps before timing (compilation happens here)")
    parser.add_argument("--reps", type=int, default=3, help="timed blocks of each contender")
    parser.add_argument("--out", default="results/benchmarks", help="folder for the JSON")
    args = parser.parse_args()
    device = torch.device(args.device)
    names = [n for n in args.networks.split(",") if n]
    if set(names) - set(NETWORKS):
        parser.error(f"unknown network {', '.join(sorted(set(names) - set(NETWORKS)))}; choose from "
                     f"{', '.join(NETWORKS)}")
    args.threads = torch.get_num_threads()
    label = torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu, {args.threads} threads"
    print(f"{label}, torch {torch.__version__}, batch {BATCH} per run")

    rows = [compare(n, g, args, device) for n in names for g in _numbers(args.packs)]
    print("\n| network | packed runs G | layout | ms/step | images/s, all runs | over one solo run |")
    print("| --- | --- | --- | --- | --- | --- |")
    for r in rows:
        print(f"| {r['network']} | {r['runs']} | {r['layout']} | {r['packed_ms_per_step']} | "
              f"{r['packed_images_per_s']:,} | {r['packed_over_solo']:.2f} |")
    result = {"device": label, "torch": torch.__version__, "batch_per_run": BATCH, "steps": args.steps,
              "reps": args.reps, "packed": rows}

    counts = _numbers(args.side_by_side)
    if counts and "w1" in names:
        one = solo_processes("w1", 1, args, device)
        print("\n| W x 1 solo processes side by side | aggregate images/s | over one process | packed G over them |")
        print("| --- | --- | --- | --- |")
        result["side_by_side"] = []
        for n in counts:
            ips = solo_processes("w1", n, args, device)
            packed = next((r for r in rows if r["network"] == "w1" and r["runs"] == n), None)
            against = f"{packed['packed_images_per_s'] / ips:.2f}" if packed else "-"
            print(f"| {n} | {ips:,.0f} | {ips / one:.2f} | {against} |")
            result["side_by_side"].append({"processes": n, "images_per_s": round(ips), "over_one": round(ips / one, 3)})

    result["table1_projection_min"] = {}
    for name, count in TABLE1_RUNS.items():
        mine = [r for r in rows if r["network"] == name]
        if mine:
            best = max(mine, key=lambda r: r["packed_images_per_s"])
            minutes = count * EPOCHS * STEPS_PER_EPOCH * BATCH / best["packed_images_per_s"] / 60
            result["table1_projection_min"][name] = {"runs": count, "best_G": best["runs"],
                                                     "minutes": round(minutes, 1)}
            print(f"Table 1, {count} runs at {name}: {minutes:,.0f} min at G = {best['runs']} "
                  f"({best['packed_images_per_s']:,} images/s)")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"pack_{label.split(',')[0].replace(' ', '_').lower()}.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nwritten to {path}")


if __name__ == "__main__":
    main()
