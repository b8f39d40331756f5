"""Swapout in a timm ResNet-18, trained briefly on CIFAR-10 on the CPU, evaluated in both inference modes.

    pip install timm            # or: pip install -e '.[interop]'
    python examples/convert_resnet_cifar.py --data-dir DIR --out results/convert-example

Three steps: give the ImageNet ResNet a CIFAR-sized stem (a 3x3 stride-1 convolution, no max-pooling),
convert its 8 residual joins to swapout with ``swapout.convert`` (Linear(1, 0.5), the paper's default),
and train it as usual. Deterministic inference replaces every mask by its expectation; stochastic
inference averages the softmax of several passes with fresh masks (section 3.1 of the paper).
The defaults are sized for about 14 CPU-minutes on two cores: a quarter-width ResNet-18
(stages of 16 to 128 channels), two epochs over 10,240 training images in batches of 64. Pass
--width 64 --train-images 50000 --batch-size 128 --lr 0.1 and more epochs for the real thing, on a GPU.
"""

import argparse
import json
import sys
import time
import types
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

import swapout
from swapout.data.files import MEAN, STD, load_split
from swapout.data.pipeline import TrainLoader, eval_batches

if torch.version.cuda is None:
    # torchvision (which timm imports) from PyPI beside a CPU-only torch: its compiled operators need
    # CUDA and its import fails registering them; timm's models need none of them.
    sys.modules.setdefault("torchvision._meta_registrations", types.ModuleType("torchvision._meta_registrations"))
import timm


def build_model(width: int) -> nn.Module:
    # timm zeroes each block's last BatchNorm scale by default, so that F(X) starts at 0; swapout's masks
    # on X then only remove signal, and a short run learns much more slowly. The paper's nets start
    # from a plain He initialisation: zero_init_last=False.
    model = timm.create_model("resnet18", pretrained=False, num_classes=10, zero_init_last=False,
                              channels=(width, 2 * width, 4 * width, 8 * width))
    model.conv1 = nn.Conv2d(3, model.conv1.out_channels, 3, stride=1, padding=1, bias=False)  # 32x32 images
    model.maxpool = nn.Identity()
    return model


@torch.no_grad()
def error(model: nn.Module, images, labels, samples: int) -> float:
    """Test error in %: deterministic inference (samples=0) or the mean softmax of `samples` passes."""
    wrong = 0
    for x, y in eval_batches(images, labels, MEAN["cifar10"], STD["cifar10"], "cpu", batch_size=200):
        wrong += (swapout.predict(model, x, samples=samples, max_batch=2000).argmax(1) != y).sum().item()
    return 100.0 * wrong / len(labels)


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-dir", default=None, help="CIFAR-10 folder (default: $SWAPOUT_DATA, or download)")
    p.add_argument("--out", default="results/convert-example")
    p.add_argument("--width", type=int, default=16, help="channels of the first stage (64: ResNet-18 itself)")
    p.add_argument("--train-images", type=int, default=10_240)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=0.05, help="peak of the one-cycle schedule")
    p.add_argument("--test-images", type=int, default=2_000, help="images for the stochastic evaluation")
    p.add_argument("--samples", type=int, default=10, help="passes of stochastic inference")
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args()


def train_epoch(model: nn.Module, batches, opt, sched) -> dict:
    """One epoch of SGD; the training loss and error (under sampled masks) of its batches."""
    model.train()
    loss_sum = correct = seen = 0
    for x, y in batches:
        logits = model(x)
        loss = F.cross_entropy(logits, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        loss_sum += loss.item() * len(y)
        correct += (logits.argmax(1) == y).sum().item()
        seen += len(y)
    model.eval()
    return {"train_loss": round(loss_sum / seen, 4), "train_error": round(100 * (1 - correct / seen), 2),
            "images": seen}


def main() -> None:
    cfg = parse_args()
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    saved = {k: v for k, v in vars(cfg).items() if k not in ("data_dir", "out")}  # no paths of this machine
    (out / "config.json").write_text(json.dumps(saved, indent=2) + "\n")
    torch.manual_seed(cfg.seed)

    train, test = load_split("cifar10", "train", cfg.data_dir), load_split("cifar10", "test", cfg.data_dir)
    test_x, test_y = test.images[test.exact], test.labels[test.exact]  # the bit-exact test images
    model = build_model(cfg.width)
    joins = swapout.find_joins(model)  # the dry run: each join's path, kind and thetas
    print("\n".join(map(str, joins)))
    model = swapout.convert(model)  # swapout, Linear(1, 0.5) from the first join to the last

    loader = TrainLoader(train.images[:cfg.train_images], train.labels[:cfg.train_images], cfg.batch_size,
                         MEAN["cifar10"], STD["cifar10"], "cpu", cfg.seed)
    opt = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=0.9, nesterov=True, weight_decay=5e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, cfg.lr, total_steps=cfg.epochs * len(loader), pct_start=0.25)
    start = time.time()
    with open(out / "metrics.jsonl", "w") as log:
        for epoch in range(cfg.epochs):
            row = {"epoch": epoch + 1, **train_epoch(model, loader.batches(epoch), opt, sched),
                   "test_error_deterministic_1000": round(error(model, test_x[:1000], test_y[:1000], 0), 2),
                   "seconds": round(time.time() - start, 1)}
            print(json.dumps(row), flush=True)
            log.write(json.dumps(row) + "\n")

    n = cfg.test_images
    results = {
        "model": f"timm resnet18, stages {cfg.width}-{8 * cfg.width}, 3x3 stride-1 stem, no max-pool",
        "joins": len(joins), "train_images": len(loader) * cfg.batch_size,
        "epochs": cfg.epochs, "train_seconds": round(time.time() - start, 1),
        "deterministic": {"test_error": round(error(model, test_x, test_y, 0), 2), "images": len(test_y),
                          "passes": 1},
        "deterministic_same_images": {"test_error": round(error(model, test_x[:n], test_y[:n], 0), 2),
                                      "images": n, "passes": 1},
        "stochastic": {"test_error": round(error(model, test_x[:n], test_y[:n], cfg.samples), 2), "images": n,
                       "passes": cfg.samples},
        "total_seconds": round(time.time() - start, 1),
    }
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
