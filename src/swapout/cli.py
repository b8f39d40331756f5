"""The ``swapout`` command line."""

from __future__ import annotations

import argparse
import sys
import time
from typing import List, Optional

import torch


class UsageError(ValueError):
    """A mistake in what the user asked for: reported in one line, exit status 2."""


def _demo(args: argparse.Namespace) -> None:
    import swapout

    torch.manual_seed(args.seed)
    print(f"swapout {swapout.__version__}, torch {torch.__version__}, {torch.get_num_threads()} CPU threads")
    print("\nThe paper's networks (parameters):")
    for name, depth, width in [("resnet_v2_ours", 20, 1), ("resnet_v2_ours", 20, 2), ("resnet_v2_ours", 32, 4),
                               ("resnet_v1", 110, 1), ("preact_resnet", 164, 1)]:
        model = swapout.create_model(name, depth=depth, width=width)
        n = sum(p.numel() for p in model.parameters())
        print(f"  {name:15s} depth {depth:4d} W x {width}: {n:>10,}")

    model = swapout.create_model("resnet_v2_ours", depth=20, width=1, theta1="linear(1,0.5)",
                                 theta2="linear(1,0.5)")
    print(f"\nSwapout v2 (20) W x 1, Linear(1, 0.5): first join {model.blocks[0].join}, "
          f"last {model.blocks[-1].join}")
    x, y = torch.randn(args.batch, 3, 32, 32), torch.randint(0, 10, (args.batch,))
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    start = time.perf_counter()
    for step in range(args.steps):
        loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        print(f"  training step {step + 1}/{args.steps}: loss {loss.item():.3f}")
    elapsed = time.perf_counter() - start
    print(f"  {args.steps * args.batch / elapsed:.0f} images/s on random data, batch {args.batch}")

    model.eval()
    with torch.no_grad():
        det = swapout.predict(model, x[:8], samples=0)
        sto = swapout.predict(model, x[:8], samples=args.samples)
    print(f"\nInference on 8 images: deterministic (expected masks) vs stochastic ({args.samples} samples)")
    print(f"  mean max-probability {det.max(-1).values.mean():.3f} vs {sto.max(-1).values.mean():.3f}; "
          f"top-1 agreement {(det.argmax(-1) == sto.argmax(-1)).float().mean():.2f}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="swapout", description="Swapout (Singh et al., NeurIPS 2016) for PyTorch.")
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="build the paper's models, train a few steps on random data, infer both ways")
    demo.add_argument("--steps", type=int, default=3, help="training steps (default 3)")
    demo.add_argument("--batch", type=int, default=32, help="batch size (default 32)")
    demo.add_argument("--samples", type=int, default=30, help="stochastic inference samples (default 30)")
    demo.add_argument("--seed", type=int, default=0)
    demo.set_defaults(func=_demo)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        args.func(args)
    except (UsageError, ValueError) as err:
        print(f"swapout {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"swapout {args.command}: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
