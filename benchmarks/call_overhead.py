"""Per-call overhead of the swapout op on a tiny tensor, where launch and Python costs are everything.

    python benchmarks/call_overhead.py [--device cuda]

Prints microseconds per forward+backward call of the residual add, the fused op and the naive op, and
(on CUDA) of one bare Triton kernel launch and one ``torch.randint`` seed draw, side by side.
"""

from __future__ import annotations

import argparse
import json
import time

import torch

import swapout
from swapout.kernels import fused


def per_call_us(fn, device: torch.device, calls: int = 2000) -> float:
    for _ in range(50):
        fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(calls):
        fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - start) / calls * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    device = torch.device(parser.parse_args().device)
    x = torch.randn(64, device=device, requires_grad=True)
    fx = torch.randn(64, device=device, requires_grad=True)

    def step(op):
        def run():
            op().sum().backward()
        return run

    previous = fused.set_enabled(True)
    out = {"add": per_call_us(step(lambda: x + fx), device),
           "fused": per_call_us(step(lambda: swapout.swapout(x, fx, 0.5, 0.5)), device)}
    fused.set_enabled(False)
    out["naive"] = per_call_us(step(lambda: swapout.swapout(x, fx, 0.5, 0.5)), device)
    fused.set_enabled(previous)
    out["seed_draw"] = per_call_us(lambda: fused.draw_seed(device, None), device)
    if device.type == "cuda":
        from swapout.kernels import triton_cuda as fused_triton

        y, seed = torch.empty_like(x), torch.tensor(1, device=device)
        out["bare_triton_launch"] = per_call_us(
            lambda: fused_triton.forward(x.detach(), fx.detach(), y, seed, 1000, 1000), device)
    print(json.dumps({"device": str(device), "us_per_call": {k: round(v, 1) for k, v in out.items()}}))


if __name__ == "__main__":
    main()
