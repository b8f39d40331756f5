"""Packed runs against solo runs: images per second of G runs trained as one packed network.

    python benchmarks/bench_pack.py                                   # on the GPU, everything (many minutes)
    python benchmarks/bench_pack.py --quick                           # on the GPU, about a minute: see below
    python benchmarks/bench_pack.py --device cpu --quick --steps 2 --warmup 1 --reps 1   # the quick mode, tried
    python benchmarks/bench_pack.py --device cpu --networks w1 --packs 1,2,4 --steps 3 --warmup 1 \
        --reps 2 --side-by-side 2                                     # the CPU, small

For each network (20-layer "Ours" v2 W x 1 and W x 2, 32-layer W x 4, swapout with Linear(1, 0.5),
batch 128 per run) and each G of ``--packs``: a training step of G runs packed into one network
(:mod:`swapout.training.packing`), fed by G on-device input pipelines as ``swapout sweep --pack`` trains it,
against one solo run (G = 1: the plain network), timed in the same process in alternating blocks.
On a GPU each contender is the fast path (bf16, ``torch.compile`` with CUDA graphs; ``--compile``), and
every compiled contender must have compiled its whole step in its warm-up and nothing while timed
(``TrainStep.check_compiled``), or the benchmark stops with what ran eagerly.

Layouts: the solo run is channels-last, and the packed network is timed in each layout of
``--layouts`` (both by default), NCHW and channels-last, because grouped convolutions have slow cuDNN
paths in some (pytorch issue 34977). Both rows are reported. Training (``swapout train``, ``swapout sweep
--pack``) always runs channels-last (``swapout.training.step.prepare_model``), so the channels-last row
is what training gets, and it is the row that the projection and the side-by-side comparison use;
a faster NCHW row says what that layout would give, which training does not choose.

Then G solo processes side by side (``--side-by-side``), the alternative to packing: aggregate
images per second over the same stretch of wall time. Last, the projected time of Table 1's 30
full-recipe runs (12 at W x 1, 18 at W x 2) at the best G measured.

``--quick`` times one solo W x 1 run against G = 8 packed W x 1 runs in both layouts, nothing else:
three networks to compile (most of its time on a GPU), then 3 alternating blocks of 20 steps. It is
meant to take at most 90 seconds on a GPU, and prints how long it took.

Absolute times on a shared machine are noise; the ratios are the result. The figures are written to
``results/benchmarks/pack_<device>.json`` (``pack_<device>_quick.json`` for ``--quick``).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from functools import lru_cache
from pathlib import Path
from typing import Callable, Dict, List, Tuple

import numpy as np
import torch

import swapout
from swapout.data.pipeline import TrainLoader
from swapout.training.packing import pack
from swapout.training.step import NotCompiled, TrainStep

from bench_train_gpu import (
    BATCH,
    EPOCHS,
    MEAN,
    STD,
    STEPS_PER_EPOCH,
    WORKER_TIMEOUT_S,
    alternating,
    backends,
    checked_device_and_networks,
    compiled_so_far,
    side_by_side,
    still_compiled,
    timed,
)

NETWORKS = {"w1": (20, 1), "w2": (20, 2), "32-w4": (32, 4)}  # name: (depth, width)
TABLE1_RUNS = {"w1": 12, "w2": 18}  # Table 1: 4 rows at W x 1 and 6 at W x 2, 3 seeds each
LAYOUTS = {"nchw": False, "channels_last": True}
TRAINING_LAYOUT = "channels_last"  # what swapout.training.step.prepare_model gives every trained network
# the full run's and the quick mode's settings, where the command line gives none
DEFAULTS = {"networks": ",".join(NETWORKS), "packs": "1,2,4,8,16,32", "side_by_side": "2,4,8", "steps": 30,
            "warmup": 10, "reps": 3, "images": 50_000}
QUICK = {"networks": "w1", "packs": "8", "side_by_side": "", "steps": 20, "warmup": 5, "reps": 3, "images": 10_000}


@lru_cache(maxsize=1)
def _data(n: int) -> Tuple[np.ndarray, np.ndarray]:
    """``n`` synthetic CIFAR-sized images and labels, made once for every contender."""
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8), rng.integers(0, 10, n)


def make_runner(name: str, runs: int, device: torch.device, channels_last: bool, compile: bool,
                images: int = DEFAULTS["images"]) -> Callable[[int], None]:
    """A function that trains ``runs`` packed runs of ``name`` for n steps on ``images`` synthetic CIFAR-sized
    images, in the given layout, compiled or not; its TrainStep is its ``step`` attribute."""
    depth, width = NETWORKS[name]
    models = []
    for seed in range(runs):
        torch.manual_seed(seed)
        models.append(swapout.create_model("resnet_v2_ours", depth=depth, width=width, method="swapout").to(device))
    model = models[0] if runs == 1 else pack(models)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    data, labels = _data(images)
    loaders = [TrainLoader(data, labels, BATCH, MEAN, STD, device, 0)]
    loaders += [TrainLoader(loaders[0].images, labels, BATCH, MEAN, STD, device, s) for s in range(1, runs)]
    step = TrainStep(model, opt, device, precision="bf16" if device.type == "cuda" else "fp32", compile=compile,
                     runs=runs, channels_last=channels_last)
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
    run.step = step  # for compiled_so_far()
    return run


def compare(name: str, runs: int, solo: Callable[[int], None], args, device: torch.device) -> List[Dict]:
    """G = ``runs`` packed runs of ``name`` in each layout of ``args.layouts`` against the solo runner
    ``solo``, in alternating blocks; a row per layout, marked with whether training uses that layout."""
    rows = []
    for layout in args.layouts:  # one packed network at a time: the largest take much of a GPU's memory
        packed = make_runner(name, runs, device, LAYOUTS[layout], args.compile, args.images)
        times = alternating({"solo": solo, f"packed {name} G={runs} {layout}": packed}, args, device)
        packed_times = times[f"packed {name} G={runs} {layout}"]
        # images per second of the pack over one solo run: G * t_solo / t_packed, median over blocks
        gain = statistics.median(runs * s / p for s, p in zip(times["solo"], packed_times))
        row = {"network": name, "runs": runs, "layout": layout, "training_layout": layout == TRAINING_LAYOUT,
               "solo_ms_per_step": round(1000 * statistics.median(times["solo"]), 3),
               "packed_ms_per_step": round(1000 * statistics.median(packed_times), 3),
               "packed_images_per_s": round(runs * BATCH / statistics.median(packed_times)),
               "packed_over_solo": round(gain, 3)}
        print(f"  {name} G={runs} {layout}: {row['packed_ms_per_step']} ms/step, "
              f"{row['packed_images_per_s']:,} images/s, {gain:.2f}x one solo run", flush=True)
        rows.append(row)
        del packed
    return rows


def _worker(rank: int, name: str, args, device_name: str, barrier, results) -> None:
    device = torch.device(device_name)
    if device.type == "cpu":
        torch.set_num_threads(max(1, args.threads // args.concurrent_now))
    run = make_runner(name, 1, device, LAYOUTS[TRAINING_LAYOUT], args.compile, args.images)
    run(args.warmup)
    warmed = compiled_so_far(run, f"process {rank}")
    barrier.wait(WORKER_TIMEOUT_S)  # every process timed over the same stretch of wall time
    seconds = timed(run, args.steps * args.reps, device)
    still_compiled(run, f"process {rank}", warmed)
    results[rank] = BATCH / seconds


def solo_processes(name: str, n: int, args, device: torch.device) -> float:
    """Aggregate images per second of ``n`` solo processes training ``name`` at once."""
    args.concurrent_now = n
    return side_by_side(n, _worker, name, args, str(device))


def _numbers(text: str) -> List[int]:
    return [int(v) for v in text.split(",") if v.strip()]


def main() -> None:
    started = time.monotonic()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--quick", action="store_true",
                        help="one solo W x 1 run against G = 8 packed runs in both layouts, nothing else (at most "
                             "about 90 seconds on a GPU); the options below still apply")
    parser.add_argument("--networks", help=f"comma-separated, of {', '.join(NETWORKS)} (default: all)")
    parser.add_argument("--packs", help=f"numbers of packed runs G (default {DEFAULTS['packs']})")
    parser.add_argument("--layouts", default="nchw,channels_last",
                        help="layouts of the packed network, of nchw and channels_last (default both; training "
                             "always runs channels_last, the solo run's layout here)")
    parser.add_argument("--side-by-side", help=f"numbers of solo processes at once, W x 1 only (default "
                                               f"{DEFAULTS['side_by_side']}; none with --quick)")
    parser.add_argument("--steps", type=int, help=f"steps per timed block (default {DEFAULTS['steps']}, "
                                                   f"{QUICK['steps']} with --quick)")
    parser.add_argument("--warmup", type=int, help=f"steps before timing, where compilation happens (default "
                                                    f"{DEFAULTS['warmup']}, {QUICK['warmup']} with --quick)")
    parser.add_argument("--reps", type=int, help=f"timed blocks of each contender (default {DEFAULTS['reps']})")
    parser.add_argument("--compile", choices=["auto", "true", "false"], default="auto",
                        help="torch.compile every contender (auto: on CUDA only, as swapout train does)")
    parser.add_argument("--out", default="results/benchmarks", help="folder for the JSON")
    args = parser.parse_args()
    for key, value in (QUICK if args.quick else DEFAULTS).items():
        if getattr(args, key, None) is None:
            setattr(args, key, value)
    device, names = checked_device_and_networks(parser, args.device, args.networks, NETWORKS)
    args.compile = device.type == "cuda" if args.compile == "auto" else args.compile == "true"
    args.layouts = [v for v in args.layouts.split(",") if v]
    if not args.layouts or set(args.layouts) - set(LAYOUTS):
        parser.error(f"--layouts takes nchw, channels_last or both, got {','.join(args.layouts) or 'none'}")
    args.threads = torch.get_num_threads()
    label = torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu, {args.threads} threads"
    print(f"{label}, torch {torch.__version__}, batch {BATCH} per run"
          + (", compiled" if args.compile else ", eager") + (", quick" if args.quick else ""))

    rows = []
    for name in names:
        solo = make_runner(name, 1, device, LAYOUTS[TRAINING_LAYOUT], args.compile, args.images)  # compiled once
        rows += [row for g in _numbers(args.packs) for row in compare(name, g, solo, args, device)]
        del solo
    print("\n| network | packed runs G | layout | ms/step | images/s, all runs | over one solo run |")
    print("| --- | --- | --- | --- | --- | --- |")
    for r in rows:
        layout = r["layout"] + (" (training's)" if r["training_layout"] else "")
        print(f"| {r['network']} | {r['runs']} | {layout} | {r['packed_ms_per_step']} | "
              f"{r['packed_images_per_s']:,} | {r['packed_over_solo']:.2f} |")
    result = {"device": label, "torch": torch.__version__, "batch_per_run": BATCH, "steps": args.steps,
              "reps": args.reps, "compiled": args.compile, "backends": backends(device),
              "training_layout": TRAINING_LAYOUT, "packed": rows}
    trained = [r for r in rows if r["training_layout"]]  # what swapout train gets

    counts = _numbers(args.side_by_side)
    if counts and "w1" in names:
        one = solo_processes("w1", 1, args, device)
        print(f"\n| W x 1 solo processes side by side | aggregate images/s | over one process | "
              f"packed G ({TRAINING_LAYOUT}) over them |")
        print("| --- | --- | --- | --- |")
        result["side_by_side"] = []
        for n in counts:
            ips = solo_processes("w1", n, args, device)
            packed = next((r for r in trained if r["network"] == "w1" and r["runs"] == n), None)
            against = f"{packed['packed_images_per_s'] / ips:.2f}" if packed else "-"
            print(f"| {n} | {ips:,.0f} | {ips / one:.2f} | {against} |")
            result["side_by_side"].append({"processes": n, "images_per_s": round(ips), "over_one": round(ips / one, 3)})

    result["table1_projection_min"] = {}
    for name, count in TABLE1_RUNS.items():
        mine = [r for r in trained if r["network"] == name]
        if mine:
            best = max(mine, key=lambda r: r["packed_images_per_s"])
            minutes = count * EPOCHS * STEPS_PER_EPOCH * BATCH / best["packed_images_per_s"] / 60
            result["table1_projection_min"][name] = {"runs": count, "best_G": best["runs"],
                                                     "minutes": round(minutes, 1)}
            print(f"Table 1, {count} runs at {name}: {minutes:,.0f} min at G = {best['runs']} "
                  f"({best['packed_images_per_s']:,} images/s, {TRAINING_LAYOUT} as training runs it)")
    result["seconds"] = round(time.monotonic() - started, 1)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"pack_{label.split(',')[0].replace(' ', '_').lower()}{'_quick' if args.quick else ''}.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nwritten to {path}; {result['seconds']:.0f} s in all")


if __name__ == "__main__":
    try:
        main()
    except NotCompiled as err:  # what it would time is not the fast path: one line, no figures
        raise SystemExit(f"{Path(__file__).name}: {err}") from None
