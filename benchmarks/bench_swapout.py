"""What swapout costs: each measurement beside its baseline, in one process, as ratios.

    python benchmarks/bench_swapout.py                 # CPU
    python benchmarks/bench_swapout.py --device cuda   # GPU

1. Training step (forward, backward, SGD step, batch 128) of the 20-layer "Ours" v2 network with
   swapout Linear(1, 0.5): fused kernel and naive reference (two torch.bernoulli masks, multiply, add),
   each against the same network with the plain residual add. W x 1 and W x 2.
   ``--compile`` compiles each network first; ``--batch`` and ``--depth`` change the workload.
   Networks and inputs are channels-last, as ``swapout train`` runs them; ``--only layouts`` times
   the W x 1 step in channels-last against NCHW.
2. Peak memory allocated during that training step, swapout against residual.
3. The op alone, forward plus backward on a 128x32x32x32 float32 tensor: fused, naive, residual add.
4. Stochastic inference with 30 samples against deterministic inference, in images x passes per second,
   in forward calls of ``swapout.evaluation.errors.rows_per_call`` rows, and against calls of 1,024 rows.

Timings interleave the contenders (one repetition of each in turn); a ratio is the median over
repetitions of the ratio of two times taken back to back, so a slow spell of a shared machine hits
both sides alike. Absolute times are printed for context; the ratios are the
result.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import sys
import time
from typing import Callable, Dict

import torch
import torch.nn.functional as F

import swapout
from swapout.evaluation.errors import rows_per_call
from swapout.kernels import fused


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def interleaved(fns: Dict[str, Callable[[], None]], reps: int, warmup: int, device: torch.device) -> Dict[str, list]:
    """Seconds per call of each function, ``reps`` times, the functions timed in turn."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    times = {k: [] for k in fns}
    for _ in range(reps):
        for k, fn in fns.items():
            sync(device)
            start = time.perf_counter()
            fn()
            sync(device)
            times[k].append(time.perf_counter() - start)
    return times


def median(times: list) -> float:
    return statistics.median(times)


def ratio(times: Dict[str, list], a: str, b: str) -> float:
    """Median over repetitions of a/b, each repetition's pair timed back to back."""
    return round(statistics.median(x / y for x, y in zip(times[a], times[b])), 3)


@contextlib.contextmanager
def backend(name: str):
    previous = fused.set_enabled(name == "fused")
    try:
        yield
    finally:
        fused.set_enabled(previous)


def training_step(method: str, width: int, device: torch.device, batch: int = 128, depth: int = 20,
                  compile_model: bool = False, channels_last: bool = True):
    """One training step as ``swapout train`` runs it: channels-last unless ``channels_last=False``."""
    torch.manual_seed(0)
    layout = torch.channels_last if channels_last else torch.contiguous_format
    model = swapout.create_model("resnet_v2_ours", depth=depth, width=width, method=method).to(device)
    model = model.to(memory_format=layout)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4)
    forward = torch.compile(model) if compile_model else model
    x = torch.randn(batch, 3, 32, 32, device=device).contiguous(memory_format=layout)
    y = torch.randint(0, 10, (batch,), device=device)

    def step():
        loss = F.cross_entropy(forward(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step


def with_backend(name: str, fn: Callable[[], None]) -> Callable[[], None]:
    def run():
        with backend(name):
            fn()
    return run


def bench_training(device: torch.device, reps: int, batch: int, depth: int, compile_model: bool,
                   widths=(1, 2)) -> dict:
    out = {"batch": batch, "depth": depth, "compiled": compile_model}
    for width in widths:
        def make(method, width=width):
            return training_step(method, width, device, batch, depth, compile_model)
        fns = {"residual": make("resnet"),
               "swapout_fused": with_backend("fused", make("swapout")),
               "swapout_naive": with_backend("reference", make("swapout"))}
        t = interleaved(fns, reps, 2, device)
        out[f"W{width}"] = {
            "ms": {k: round(median(v) * 1e3, 2) for k, v in t.items()},
            "fused_over_residual": ratio(t, "swapout_fused", "residual"),
            "naive_over_residual": ratio(t, "swapout_naive", "residual"),
        }
    return out


def bench_layouts(device: torch.device, reps: int, batch: int, depth: int) -> dict:
    """The W x 1 training step in channels-last against NCHW, residual and swapout (fused)."""
    fns = {f"{method}_{name}": with_backend("fused", training_step(method, 1, device, batch, depth,
                                                                    channels_last=name == "cl"))
           for method in ("resnet", "swapout") for name in ("cl", "nchw")}
    t = interleaved(fns, reps, 2, device)
    return {"ms": {k: round(median(v) * 1e3, 2) for k, v in t.items()},
            "residual_nchw_over_cl": ratio(t, "resnet_nchw", "resnet_cl"),
            "swapout_nchw_over_cl": ratio(t, "swapout_nchw", "swapout_cl"),
            "swapout_over_residual_cl": ratio(t, "swapout_cl", "resnet_cl"),
            "swapout_over_residual_nchw": ratio(t, "swapout_nchw", "resnet_nchw")}


def peak_step_bytes(step: Callable[[], None], device: torch.device) -> int:
    """Peak bytes allocated during one call of ``step``, above what was allocated before it."""
    step()
    if device.type == "cuda":
        torch.cuda.synchronize()
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        step()
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated() - base
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        step()
    events = sorted((e.start_ns(), e.nbytes()) for e in prof.profiler.kineto_results.events() if e.name() == "[memory]")
    current = peak = 0
    for _, delta in events:
        current += delta
        peak = max(peak, current)
    return peak


def bench_memory(device: torch.device) -> dict:
    residual = peak_step_bytes(training_step("resnet", 1, device), device)
    with backend("fused"):
        fused_peak = peak_step_bytes(training_step("swapout", 1, device), device)
    with backend("reference"):
        naive_peak = peak_step_bytes(training_step("swapout", 1, device), device)
    return {"MB": {"residual": round(residual / 2**20, 1), "swapout_fused": round(fused_peak / 2**20, 1),
                   "swapout_naive": round(naive_peak / 2**20, 1)},
            "fused_over_residual": round(fused_peak / residual, 3),
            "naive_over_residual": round(naive_peak / residual, 3)}


def bench_op(device: torch.device, reps: int) -> dict:
    x = torch.randn(128, 32, 32, 32, device=device, requires_grad=True)
    fx = torch.randn_like(x, requires_grad=True)
    g = torch.randn_like(x)

    def run(fn):
        def once():
            x.grad = fx.grad = None
            fn().backward(g)
        return once

    fns = {"residual_add": run(lambda: x + fx),
           "fused": with_backend("fused", run(lambda: swapout.swapout(x, fx, 0.7, 0.6))),
           "naive": with_backend("reference", run(lambda: swapout.swapout(x, fx, 0.7, 0.6)))}
    t = interleaved(fns, reps, 2, device)
    return {"ms": {k: round(median(v) * 1e3, 3) for k, v in t.items()},
            "fused_over_add": ratio(t, "fused", "residual_add"),
            "naive_over_add": ratio(t, "naive", "residual_add"),
            "naive_over_fused": ratio(t, "naive", "fused")}


def bench_inference(device: torch.device, reps: int, images: int, samples: int = 30) -> dict:
    torch.manual_seed(0)
    model = swapout.create_model("resnet_v2_ours", depth=20, width=1).to(device, memory_format=torch.channels_last)
    model.eval()
    x_small = torch.randn(images, 3, 32, 32, device=device)
    x_big = torch.randn(images * samples, 3, 32, 32, device=device)
    chunk = rows_per_call(device)  # what swapout eval uses: 128 rows per call on a CPU, 1,024 on a GPU

    def stochastic(rows):
        return lambda: swapout.predict(model, x_small, samples=samples, max_batch=rows)

    fns = {"deterministic": lambda: swapout.predict(model, x_big, samples=0, max_batch=chunk),
           "stochastic": with_backend("fused", stochastic(chunk)),
           "stochastic_naive": with_backend("reference", stochastic(chunk)),
           "stochastic_1024_rows": with_backend("fused", stochastic(1024))}
    t = interleaved(fns, reps, 1, device)
    # a throughput ratio is the inverse time ratio: same number of images x passes on both sides
    return {"rows_per_call": chunk,
            "images_x_passes_per_s": {k: round(images * samples / median(v)) for k, v in t.items()},
            "stochastic_over_deterministic": ratio(t, "deterministic", "stochastic"),
            "naive_over_deterministic": ratio(t, "deterministic", "stochastic_naive"),
            "rows_per_call_speedup_over_1024": ratio(t, "stochastic_1024_rows", "stochastic")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--reps", type=int, default=None, help="timed repetitions (default: 15 CPU, 30 CUDA)")
    parser.add_argument("--only", nargs="*", default=["training", "memory", "op", "inference"],
                        choices=["training", "layouts", "memory", "op", "inference"])
    parser.add_argument("--batch", type=int, default=128, help="training batch size (default 128, the paper's)")
    parser.add_argument("--depth", type=int, default=20, help="network depth, 6n+2 (default 20)")
    parser.add_argument("--widths", type=int, nargs="+", default=[1, 2], help="width multipliers (default 1 2)")
    parser.add_argument("--compile", action="store_true", help="torch.compile the networks of the training step")
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args()
    device = torch.device(args.device)
    reps = args.reps or (30 if device.type == "cuda" else 15)
    if not fused.available(torch.ones(1, device=device)):
        sys.exit(f"no fused kernel for {device}: nothing to compare")
    info = {"device": torch.cuda.get_device_name() if device.type == "cuda"
            else f"cpu, {torch.get_num_threads()} threads",
            "torch": torch.__version__, "reps": reps}
    print(json.dumps(info))
    results = {"info": info}
    for name in args.only:
        if name == "training":
            results[name] = bench_training(device, reps, args.batch, args.depth, args.compile, args.widths)
        elif name == "layouts":
            results[name] = bench_layouts(device, reps, args.batch, args.depth)
        elif name == "memory":
            results[name] = bench_memory(device)
        elif name == "op":
            results[name] = bench_op(device, reps * 3)
        elif name == "inference":
            results[name] = bench_inference(device, max(3, reps // 2), 128 if device.type == "cpu" else 1024)
        print(json.dumps({name: results[name]}), flush=True)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(results, fh, indent=2)


if __name__ == "__main__":
    main()
