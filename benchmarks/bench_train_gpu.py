"""Training speed of the fast path against the eager float32 path, and of several runs sharing one GPU.

    python benchmarks/bench_train_gpu.py                       # on the GPU, everything (about 6 minutes)
    python benchmarks/bench_train_gpu.py --profile             # also a kernel profile of the fast W x 1 step
    python benchmarks/bench_train_gpu.py --device cpu --networks w1-swapout --steps 3 --warmup 2 --reps 1 \
        --concurrent 1,2                                        # a quick check that the script runs
    python benchmarks/bench_train_gpu.py --device cpu --against plain --networks w1-swapout,w1-residual \
        --concurrent ""                                         # the CPU: the old loop against today's

1. For each network (20-layer "Ours" v2 W x 1 with swapout Linear(1, 0.5) and with residual joins,
   W x 2, and the 32-layer W x 4), batch 128, the same on-device input pipeline for both contenders:
   - eager: float32, no compilation, and the two reads from the device per step that the training
     loop used to make (the loss for the non-finite check, the correct count for the running error);
   - fast: :class:`swapout.training.step.TrainStep` with bf16 autocast, channels-last and ``torch.compile``
     (CUDA graphs on a GPU), no read from the device inside the step.
   Blocks of ``--steps`` steps of each run in turn, ``--reps`` times; a ratio is the median of the
   ratios of blocks timed back to back. It prints ms per step, images per second and the projected
   minutes of the paper's 256-epoch recipe (390 steps per epoch).
2. N concurrent processes, each training the fast W x 1 swapout network: aggregate images per second
   against one process alone, for N in ``--concurrent``.

Every compiled contender is checked after its warm-up and again after timing: it must have compiled
its forward pass and its update, hit no recompile limit, and compiled nothing while timed
(:meth:`swapout.training.step.TrainStep.check_compiled`); otherwise the benchmark stops with that
message rather than report eager code as the fast path. On CUDA a TrainStep turns cuDNN's autotuner on
(the shapes are static) and, for float32, TF32 off (:func:`swapout.training.step.set_cuda_backends`);
the old loop's contender runs under the same process-wide settings, which the JSON records.

Absolute times on a shared machine are noise; the ratios are the result. The figures are written to
``results/benchmarks/train_<device>.json``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

import numpy as np
import torch
import torch.multiprocessing as mp
import torch.nn.functional as F

import swapout
from swapout.data.pipeline import TrainLoader
from swapout.training.step import Compilation, NotCompiled, TrainStep, prepare_model

NETWORKS = {  # name: (depth, width, method)
    "w1-swapout": (20, 1, "swapout"),
    "w1-residual": (20, 1, "resnet"),
    "w2-swapout": (20, 2, "swapout"),
    "32-w4-swapout": (32, 4, "swapout"),
}
STEPS_PER_EPOCH, EPOCHS, BATCH = 390, 256, 128
MEAN, STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)
# How long side_by_side waits for its processes (warm-up and compilation included) before ending them
WORKER_TIMEOUT_S = 900.0


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def make_runner(name: str, kind: str, device: torch.device, seed: int = 0) -> Callable[[int], None]:
    """A function that trains ``name`` for n steps on synthetic CIFAR-shaped data held on ``device``.

    ``kind``: "eager" (the old loop), "plain" (:class:`TrainStep` in fp32, eager, read every step: the
    CPU defaults of ``swapout train``) or "fast" (bf16, compiled, no reads).
    """
    depth, width, method = NETWORKS[name]
    torch.manual_seed(seed)
    model = swapout.create_model("resnet_v2_ours", depth=depth, width=width, method=method).to(device).train()
    if kind != "eager":  # swapout train's layout on every device
        model = prepare_model(model)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (50_000, 32, 32, 3), dtype=np.uint8)
    labels = rng.integers(0, 10, 50_000)
    loader = TrainLoader(images, labels, BATCH, MEAN, STD, device, seed)
    batches = iter(())
    epoch = [0]

    def next_batch():
        nonlocal batches
        try:
            return next(batches)
        except StopIteration:
            batches = loader.batches(epoch[0])
            epoch[0] += 1
            return next(batches)

    if kind in ("fast", "plain"):
        step = TrainStep(model, opt, device, precision="bf16" if kind == "fast" else "fp32", compile=kind == "fast")

        def run(n: int) -> None:
            for _ in range(n):
                step(*next_batch())
                if kind == "plain":
                    step.read()
        run.step = step  # for compiled_so_far()
    else:
        def run(n: int) -> None:
            for _ in range(n):
                x, y = next_batch()
                logits = model(x)
                loss = F.cross_entropy(logits, y)
                float(loss.item())  # the non-finite check, read every step
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                int((logits.argmax(1) == y).sum())  # the running error, read every step
    return run


def timed(run: Callable[[int], None], steps: int, device: torch.device) -> float:
    """Seconds per step over a block of ``steps`` steps."""
    sync(device)
    start = time.perf_counter()
    run(steps)
    sync(device)
    return (time.perf_counter() - start) / steps


def compiled_so_far(run: Callable[[int], None], name: str) -> Optional[Compilation]:
    """What the runner's compiled TrainStep compiled so far (None for a runner that compiles nothing);
    :class:`NotCompiled`, naming the runner, when part of its step ran eagerly."""
    step = getattr(run, "step", None)
    if step is None or not step.compiled:
        return None
    try:
        return dataclasses.replace(step.check_compiled())
    except NotCompiled as err:
        raise NotCompiled(f"{name}: {err}") from None


def still_compiled(run: Callable[[int], None], name: str, warmed: Optional[Compilation]) -> None:
    """After timing: the runner ran the code its warm-up compiled, and compiled nothing while timed."""
    now = compiled_so_far(run, name)
    if now != warmed:
        raise NotCompiled(f"{name}: Dynamo compiled while the steps were timed ({warmed} after the warm-up, "
                          f"{now} after timing); time more warm-up steps (--warmup)")


def alternating(runners: Dict[str, Callable[[int], None]], args, device: torch.device) -> Dict[str, list]:
    """Seconds per step of each runner: ``args.warmup`` steps each, then ``args.reps`` rounds of one
    block of ``args.steps`` steps of each runner in turn, so that they share the machine's moods.
    A compiled runner must have compiled its whole step in the warm-up, and nothing after it."""
    warmed = {}
    for k, run in runners.items():
        run(args.warmup)  # compilation and CUDA graph capture happen here
        warmed[k] = compiled_so_far(run, k)
    times = {k: [] for k in runners}
    for _ in range(args.reps):
        for k, run in runners.items():
            times[k].append(timed(run, args.steps, device))
    for k, run in runners.items():
        still_compiled(run, k, warmed[k])
    return times


def compare(name: str, args, device: torch.device) -> Dict[str, float]:
    runners = {"eager": make_runner(name, "eager", device), args.against: make_runner(name, args.against, device)}
    times = alternating(runners, args, device)
    ratio = statistics.median(e / f for e, f in zip(times["eager"], times[args.against]))
    out = {"network": name, f"ratio_eager_over_{args.against}": round(ratio, 3)}
    for k, t in times.items():
        ms = 1000 * statistics.median(t)
        out[f"{k}_ms_per_step"] = round(ms, 3)
        out[f"{k}_images_per_s"] = round(BATCH * 1000 / ms)
        out[f"{k}_full_recipe_min"] = round(ms * STEPS_PER_EPOCH * EPOCHS / 60000, 2)
    return out


def _worker(rank: int, args, device_name: str, barrier, results) -> None:
    device = torch.device(device_name)
    run = make_runner("w1-swapout", "fast", device, seed=rank)
    run(args.warmup)
    warmed = compiled_so_far(run, f"process {rank}")
    barrier.wait(WORKER_TIMEOUT_S)  # every process timed over the same stretch of wall time
    seconds = timed(run, args.steps * args.reps, device)
    still_compiled(run, f"process {rank}", warmed)
    results[rank] = BATCH / seconds


def side_by_side(n: int, worker: Callable, *worker_args, timeout: float = WORKER_TIMEOUT_S) -> float:
    """The sum of what ``n`` processes ``worker(rank, *worker_args, barrier, results)`` put in ``results[rank]``
    (images per second, each timed after the barrier, so over the same stretch of wall time).

    A process that fails would leave the others waiting at the barrier for ever: when one exits
    without its result, or ``timeout`` seconds pass, the others are ended and RuntimeError says which.
    """
    ctx = mp.get_context("spawn")
    with ctx.Manager() as manager:
        barrier, results = ctx.Barrier(n), manager.dict()
        procs = [ctx.Process(target=worker, args=(r, *worker_args, barrier, results)) for r in range(n)]
        for p in procs:
            p.start()
        deadline = time.monotonic() + timeout

        def without_result() -> list:  # the processes that ended without their result
            return [r for r, p in enumerate(procs) if p.exitcode is not None and r not in results]

        while any(p.is_alive() for p in procs) and not without_result() and time.monotonic() < deadline:
            time.sleep(0.1)
        failed = without_result()
        for p in procs:  # the others, when one failed or time ran out; else nothing is left
            if p.is_alive():
                p.terminate()
        for p in procs:
            p.join(10)
            if p.is_alive():
                p.kill()
                p.join()
        done = dict(results)
    ended = [r for r in range(n) if r not in done and r not in failed]
    if failed:
        codes = ", ".join(f"process {r} exit code {procs[r].exitcode}" for r in failed)
        raise RuntimeError(f"{len(failed)} of {n} concurrent processes failed ({codes}); "
                           f"{len(ended)} other(s) were ended")
    if ended:
        raise RuntimeError(f"{len(ended)} of {n} concurrent processes had not finished after {timeout:.0f} s; "
                           f"they were ended")
    return sum(done.values())


def concurrent(n: int, args, device: torch.device) -> float:
    """Aggregate images per second of ``n`` processes training the fast W x 1 swapout network at once."""
    return side_by_side(n, _worker, args, str(device))


def backends(device: torch.device) -> Dict[str, bool]:
    """The process-wide settings the contenders ran under (on CUDA, TrainStep sets them)."""
    if device.type != "cuda":
        return {}
    return {"cudnn_benchmark": torch.backends.cudnn.benchmark, "cudnn_tf32": torch.backends.cudnn.allow_tf32,
            "matmul_tf32": torch.backends.cuda.matmul.allow_tf32}


def profile(args, device: torch.device, path: Path) -> None:
    """Kernel-level profile of the fast W x 1 swapout step: where its time goes."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    run = make_runner("w1-swapout", "fast", device)
    run(args.warmup)
    sync(device)
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with torch_profile(activities=activities) as prof:
        run(20)
        sync(device)
    key = "cuda_time_total" if device.type == "cuda" else "cpu_time_total"
    path.write_text(prof.key_averages().table(sort_by=key, row_limit=30))


def checked_device_and_networks(parser: argparse.ArgumentParser, device_name: str, networks: str,
                                known) -> Tuple[torch.device, List[str]]:
    """The benchmark's ``--device`` and ``--networks``, or one line from ``parser`` saying what was wrong."""
    try:
        device = torch.device(device_name)
    except RuntimeError:
        parser.error(f"--device must name a device, such as cuda, cuda:1 or cpu; got {device_name!r}")
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error("CUDA is not available here; use --device cpu")
    names = [n for n in networks.split(",") if n]
    unknown = sorted(set(names) - set(known))
    if unknown:
        parser.error(f"unknown network {', '.join(unknown)}; choose from {', '.join(known)}")
    return device, names


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--networks", default=",".join(NETWORKS), help=f"comma-separated, of {', '.join(NETWORKS)}")
    parser.add_argument("--steps", type=int, default=100, help="steps per timed block")
    parser.add_argument("--warmup", type=int, default=30, help="steps before timing (compilation happens here)")
    parser.add_argument("--reps", type=int, default=3, help="timed blocks of each contender")
    parser.add_argument("--concurrent", default="1,2,4,8", help="numbers of concurrent processes")
    parser.add_argument("--against", default="fast", choices=["fast", "plain"],
                        help="the contender timed against the old eager loop: the fast path (default), or the "
                             "plain TrainStep that `swapout train` uses on the CPU (fp32, eager, a read per step)")
    parser.add_argument("--profile", action="store_true", help="also write a kernel profile of the fast step")
    parser.add_argument("--out", default="results/benchmarks", help="folder for the JSON (and the profile)")
    args = parser.parse_args()
    device, names = checked_device_and_networks(parser, args.device, args.networks, NETWORKS)
    label = torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu, {torch.get_num_threads()} threads"
    print(f"{label}, torch {torch.__version__}, batch {BATCH}")

    rows = [compare(n, args, device) for n in names]
    a = args.against
    print(f"\n| network | eager fp32 ms/step | {a} ms/step | eager / {a} | {a} images/s | {a} 256 epochs (min) |")
    print("| --- | --- | --- | --- | --- | --- |")
    for r in rows:
        print(f"| {r['network']} | {r['eager_ms_per_step']} | {r[f'{a}_ms_per_step']} | {r[f'ratio_eager_over_{a}']} "
              f"| {r[f'{a}_images_per_s']:,} | {r[f'{a}_full_recipe_min']} |")
    by_name = {r["network"]: r for r in rows}
    result = {"device": label, "torch": torch.__version__, "batch": BATCH, "steps": args.steps, "reps": args.reps,
              "networks": rows, "backends": backends(device)}
    if {"w1-swapout", "w1-residual"} <= set(by_name):
        ratio = by_name["w1-swapout"][f"{a}_ms_per_step"] / by_name["w1-residual"][f"{a}_ms_per_step"]
        result[f"{a}_swapout_over_residual_w1"] = round(ratio, 3)
        print(f"\n{a} path, swapout / residual joins (W x 1): {ratio:.3f}")

    counts = [int(c) for c in args.concurrent.split(",") if c]
    if counts:
        throughput = {n: concurrent(n, args, device) for n in counts}
        single = throughput.get(1) or throughput[counts[0]]
        print("\n| concurrent W x 1 runs | aggregate images/s | against one run |\n| --- | --- | --- |")
        for n, ips in throughput.items():
            print(f"| {n} | {ips:,.0f} | {ips / single:.2f} |")
        result["concurrent"] = [{"processes": n, "images_per_s": round(ips), "over_one": round(ips / single, 3)}
                                for n, ips in throughput.items()]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    tag = label.split(",")[0].replace(" ", "_").lower()
    if args.profile:
        profile(args, device, out / f"train_profile_{tag}.txt")
    name = f"train_{tag}" + ("" if a == "fast" else f"_{a}")
    (out / f"{name}.json").write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nwritten to {out / f'{name}.json'}")


if __name__ == "__main__":
    try:
        main()
    except NotCompiled as err:  # what it would time is not the fast path: one line, no figures
        raise SystemExit(f"{Path(__file__).name}: {err}") from None
