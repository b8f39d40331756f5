"""``swapout demo``: the library at a glance, on random data, in a few seconds."""

from __future__ import annotations

import time

import torch

from ..checks import check_positive_int
from ..progress import plural

__all__ = ["demo"]


def demo(steps: int = 3, batch: int = 32, samples: int = 30, seed: int = 0) -> None:
    """Print the paper's networks' sizes, train a few steps on random data, and infer both ways.

    Args:
        steps: training steps of the 20-layer Swapout v2 W x 1 network.
        batch: images per step.
        samples: stochastic passes to compare with deterministic inference.
        seed: seed of the weights, the data and the masks.
    """
    import swapout

    for name, value in (("steps", steps), ("batch", batch), ("samples", samples)):
        check_positive_int(value, name)
    if samples < 2:
        raise ValueError(f"samples must be at least 2, to compare stochastic passes with each other; got {samples}")
    torch.manual_seed(seed)
    print(f"swapout {swapout.__version__}, torch {torch.__version__}, {plural(torch.get_num_threads(), 'CPU thread')}")
    print("\nThe paper's networks (parameters):")
    for name, depth, width in [("resnet_v2_ours", 20, 1), ("resnet_v2_ours", 20, 2), ("resnet_v2_ours", 32, 4),
                               ("resnet_v1", 110, 1), ("preact_resnet", 164, 1)]:
        model = swapout.create_model(name, depth=depth, width=width)
        n = sum(p.numel() for p in model.parameters())
        print(f"  {name:15s} depth {depth:4d} W x {width}: {n:>10,}")

    model = swapout.create_model("resnet_v2_ours", depth=20, width=1, theta1="linear(1,0.5)",
                                 theta2="linear(1,0.5)")
    joins = swapout.find_joins(model)
    print(f"\nSwapout v2 (20) W x 1, Linear(1, 0.5): first join {joins[0].module}, last {joins[-1].module}")
    x, y = torch.randn(batch, 3, 32, 32), torch.randint(0, 10, (batch,))
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    start = time.perf_counter()
    for step in range(steps):
        loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        print(f"  training step {step + 1}/{steps}: loss {loss.item():.3f}")
    elapsed = time.perf_counter() - start
    print(f"  {steps * batch / elapsed:.0f} images/s on random data, batch {batch}")

    model.eval()
    with torch.no_grad():
        det = [swapout.predict(model, x[:8], samples=0) for _ in range(2)]
        passes = swapout.stochastic_passes(model, x[:8], samples=samples)
    spread = (passes - passes.mean(0)).abs().sum(-1).mean().item() / 2
    print("\nInference on 8 images (an untrained net: the figures show the mechanism, not accuracy)")
    print(f"  deterministic (masks at their expectations): two passes equal: {torch.equal(*det)}")
    print(f"  stochastic ({samples} samples): passes differ, mean total variation from their average "
          f"{spread:.4f}")
