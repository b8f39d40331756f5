"""Figure 2 of the paper on the shared GPU-trained swapout model: test error of stochastic inference against
the number of passes averaged, mean and standard error over independent repetitions, beside the deterministic
error. CPU; writes ``figure2-test.json`` and ``figure2-test.png`` to ``--out``:

    python experiments/figure2_shared.py --state SHARED/swapout-v2-20-w1-linear-1-0.5.pt --limit 2000 \\
        --repeats 10 --out results/figure2

The model is built as the shared models' README says; the test images are the first ``--limit`` of the 9,980
exact test images of the compact CIFAR-10 copy (of the 10,000 of the official archive, all exact).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

import swapout
from swapout.data import MEAN, STD, load_split
from swapout.evaluation.errors import evaluate_split, sample_curve
from swapout.evaluation.plots import plot_curve


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--state", required=True, help="the shared swapout model's state dict")
    parser.add_argument("--data-dir", default=None, help="CIFAR-10 (default: swapout's usual search)")
    parser.add_argument("--limit", type=int, default=2000, help="test images (the first N)")
    parser.add_argument("--samples", type=int, default=30, help="passes per repetition")
    parser.add_argument("--repeats", type=int, default=10, help="independent repetitions")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()

    model = swapout.create_model("resnet_v2_ours", depth=20, width=1, num_classes=10, method="swapout",
                                 theta1="linear(1,0.5)", theta2="linear(1,0.5)")
    model.load_state_dict(torch.load(args.state, map_location="cpu", weights_only=True))
    model.eval()
    test = load_split("cifar10", "test", args.data_dir)
    exact = test.exact.nonzero()[0][:args.limit]   # the compact copy's 20 approximate images left out
    images, labels = test.images[exact], test.labels[exact]
    start = time.time()
    torch.manual_seed(args.seed)
    deterministic = evaluate_split(model, images, labels, MEAN["cifar10"], STD["cifar10"], "cpu", samples=0)
    curve = sample_curve(model, images, labels, MEAN["cifar10"], STD["cifar10"], "cpu",
                         max_samples=args.samples, repeats=args.repeats)
    curve.update(deterministic_error=deterministic["deterministic_error"], seed=args.seed,
                 model="shared swapout v2 (20) W x 1, Linear(1, 0.5)", state=Path(args.state).name,
                 test_images=f"the first {len(labels):,} of the {int(test.exact.sum()):,} exact test images",
                 seconds=round(time.time() - start, 1))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "figure2-test.json").write_text(json.dumps(curve, indent=1) + "\n")
    plot_curve(curve, args.out / "figure2-test.png",
               title=f"Figure 2, shared swapout W x 1: {len(labels):,} test images, {args.repeats} repetitions; "
                     f"deterministic {deterministic['deterministic_error']:.2f}%")
    print(json.dumps({k: curve[k] for k in ("deterministic_error", "seconds")}),
          "mean error at 1, 10, 30 passes:", curve["mean_error"][0], curve["mean_error"][9], curve["mean_error"][-1])


if __name__ == "__main__":
    main()
