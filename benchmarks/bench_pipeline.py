"""Training throughput of swapout's input pipeline against a plain PyTorch DataLoader, same model.

    python benchmarks/bench_pipeline.py [--device cuda] [--steps 20] [--rounds 3]

Ours: the training set as one uint8 tensor on the device, flips and the batch's translation applied to
whole batches there (``swapout.data.pipeline.TrainLoader``). Baseline: a ``Dataset`` that augments one image
at a time (pad, random crop, flip, normalise) behind a ``DataLoader`` with 0 and 2 worker processes.
Both feed the same 20-layer swapout network, batch 128, SGD step included. Rounds alternate between
the contenders; the figures are images per second over all rounds, and their ratios.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch
import torch.nn.functional as F

import swapout
from swapout.data.files import MEAN, STD, load_split
from swapout.data.pipeline import TrainLoader


class PerImageCifar(torch.utils.data.Dataset):
    """The usual per-image augmentation: zero-pad 4, random 32x32 crop, random flip, normalise."""

    def __init__(self, images: np.ndarray, labels: np.ndarray):
        self.images = torch.from_numpy(images).permute(0, 3, 1, 2).contiguous()
        self.labels = torch.from_numpy(labels)
        self.mean = torch.tensor(MEAN["cifar10"]).view(3, 1, 1)
        self.std = torch.tensor(STD["cifar10"]).view(3, 1, 1)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):
        x = (self.images[i].float() / 255 - self.mean) / self.std
        x = F.pad(x, (4, 4, 4, 4))
        dy, dx = torch.randint(0, 9, (2,)).tolist()
        x = x[:, dy:dy + 32, dx:dx + 32]
        if torch.rand(()) < 0.5:
            x = x.flip(2)
        return x, self.labels[i]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--steps", type=int, default=20, help="training steps per round and contender")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--data-dir", default=None)
    args = parser.parse_args()
    device = torch.device(args.device)
    train = load_split("cifar10", "train", args.data_dir)
    torch.manual_seed(0)
    model = swapout.create_model("resnet_v2_ours", depth=20, width=1).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4)

    def step(x, y):
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    ours = TrainLoader(train.images, train.labels, 128, MEAN["cifar10"], STD["cifar10"], device, seed=0)
    dataset = PerImageCifar(train.images, train.labels)
    loaders = {f"dataloader_{w}_workers": torch.utils.data.DataLoader(
        dataset, batch_size=128, shuffle=True, drop_last=True, num_workers=w, persistent_workers=w > 0,
        pin_memory=device.type == "cuda") for w in (0, 2)}
    streams = {"swapout_pipeline": (b for e in range(10**6) for b in ours.batches(e)),
               **{k: (b for _ in range(10**6) for b in dl) for k, dl in loaders.items()}}
    seconds = {k: 0.0 for k in streams}
    for stream in streams.values():  # warm-up: workers started, first batches made
        for _ in range(2):
            step(*(t.to(device, non_blocking=True) for t in next(stream)))
    for _ in range(args.rounds):
        for name, stream in streams.items():
            if device.type == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
            for _ in range(args.steps):
                x, y = next(stream)
                step(x.to(device, non_blocking=True), y.to(device, non_blocking=True))
            if device.type == "cuda":
                torch.cuda.synchronize()
            seconds[name] += time.perf_counter() - start
    images = args.rounds * args.steps * 128
    rate = {k: round(images / v, 1) for k, v in seconds.items()}
    print(json.dumps({"device": str(device), "threads": torch.get_num_threads(), "images_per_s": rate,
                      "ours_over_dataloader": {k: round(rate["swapout_pipeline"] / v, 3)
                                               for k, v in rate.items() if k != "swapout_pipeline"}}))


if __name__ == "__main__":
    main()
