"""Inference beyond the paper: calibration, OOD detection, adaptive inference, BatchNorm recalibration.

Measures the shared GPU-trained models (state dicts) and any number of run directories, on the
CPU, and writes small JSON files, figures and a README with the tables to ``--out``:

    python experiments/inference_study.py --swapout-state SWAPOUT.pt --resnet-state RESNET.pt \\
        --run RUN_DIR --cache /tmp/inference-cache --out results/inference

The logits of every model on every split (deterministic, and 30 stochastic passes for models with
random masks) are computed once and cached under ``--cache``; every figure is derived from them,
except the real adaptive runs and the recalibration experiments, which run the models again.
``--stages`` picks what to (re)do: logits, uncertainty, adaptive, recalibration, readme.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from inference_study_parts import adaptive_stage, readme_stage, recalibration_stage, uncertainty_stage

import swapout
from swapout.data.files import MEAN, STD, load_split
from swapout.evaluation.errors import has_random_masks, split_logits
from swapout.runs.config import TrainConfig
from swapout.runs.experiment import build_model, eval_splits
from swapout.runs.rundir import RunDir

SHARED = {
    "shared-swapout": ("shared swapout", "the shared GPU-trained swapout model (Swapout v2 W x 1, Linear(1, 0.5), "
                       "158 epochs)", dict(method="swapout", theta1="linear(1,0.5)", theta2="linear(1,0.5)")),
    "shared-resnet": ("shared ResNet", "the shared GPU-trained ResNet v2 W x 1 (158 epochs)", dict(method="resnet")),
}


class Subject:
    """One model under study: how to build it, what it trained on, which splits it is measured on."""

    def __init__(self, key: str, label: str, description: str, model, train_images, train_labels, val=None):
        self.key, self.label, self.description, self.model = key, label, description, model.eval()
        self.train_images, self.train_labels, self.val = train_images, train_labels, val
        self.stochastic = has_random_masks(model)


def subjects(args, train, test, ood) -> list:
    out = []
    for key, path in (("shared-swapout", args.swapout_state), ("shared-resnet", args.resnet_state)):
        if path:
            label, description, kwargs = SHARED[key]
            model = swapout.create_model("resnet_v2_ours", depth=20, width=1, num_classes=10, **kwargs)
            model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
            out.append(Subject(key, label, description, model, train.images, train.labels))
    for run_dir in args.run:
        run = RunDir(run_dir)
        state, _, _ = run.latest_checkpoint()
        cfg = TrainConfig.from_dict(state["config"])
        cfg.eval_limit = None
        model = build_model(cfg)
        model.load_state_dict(state["model"])
        results = run.read_results() or {}
        epochs = results.get("epochs_completed", cfg.epochs)
        key = "run-" + (cfg.preset or cfg.model).replace("/", "-")
        description = (f"a {epochs:g}-epoch CPU run of the preset {cfg.preset}" if cfg.preset
                       else f"a {epochs:g}-epoch run of {cfg.model}")
        splits = eval_splits(cfg, train, test)
        pool = len(train.labels) - (cfg.val_split or 0)
        label = f"{cfg.method} run, {epochs:g} epochs"
        out.append(Subject(key, label, description, model, train.images[:pool], train.labels[:pool], splits.get("val")))
    return out


def cached_logits(subject: Subject, name: str, images, labels, samples: int, cache: Path, chunk: int = 1000) -> dict:
    """Deterministic logits and ``samples`` stochastic passes of ``subject`` on a split, computed once.

    Cached per chunk of ``chunk`` images, so that an interrupted study loses little work.
    """
    path = cache / f"{subject.key}-{name}-{samples}.pt"
    if path.exists():
        return torch.load(path, weights_only=True)
    passes = samples if subject.stochastic else 0
    parts, seconds = [], 0.0
    for lo in range(0, len(labels), chunk):
        part_path = cache / f"{subject.key}-{name}-{samples}.{lo}.pt"
        if not part_path.exists():
            start = time.time()
            part = split_logits(subject.model, images[lo:lo + chunk], labels[lo:lo + chunk], MEAN["cifar10"],
                                STD["cifar10"], "cpu", passes)
            part["seconds"] = torch.tensor(time.time() - start)
            torch.save(part, part_path)
            print(f"{subject.key} {name}: images {lo:,}-{lo + len(part['labels']):,} of {len(labels):,}, "
                  f"{passes} passes, {time.time() - start:.0f} s", flush=True)
        parts.append(torch.load(part_path, weights_only=True))
        seconds += float(parts[-1]["seconds"])
    out = {"labels": torch.cat([p["labels"] for p in parts]), "seconds": torch.tensor(seconds)}
    for key in ("deterministic", "passes"):
        if key in parts[0]:
            out[key] = torch.cat([p[key] for p in parts], dim=1 if key == "passes" else 0)
    torch.save(out, path)
    for lo in range(0, len(labels), chunk):
        (cache / f"{subject.key}-{name}-{samples}.{lo}.pt").unlink()
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--swapout-state", help="state dict of the shared swapout model")
    parser.add_argument("--resnet-state", help="state dict of the shared ResNet")
    parser.add_argument("--run", action="append", default=[], help="a run directory (repeatable)")
    parser.add_argument("--cache", required=True, help="folder for the cached logits (outside the repository)")
    parser.add_argument("--out", default="results/inference")
    parser.add_argument("--samples", type=int, default=30)
    parser.add_argument("--stages", default="logits,uncertainty,adaptive,recalibration,readme")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    parser.add_argument("--limit", type=int, default=0, help="a quick check: the first N images of each split only, "
                                                             "and recalibration on N images at most")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    cache, out = Path(args.cache), Path(args.out)
    cache.mkdir(parents=True, exist_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    train, test, ood = load_split("cifar10", "train"), load_split("cifar10", "test"), load_split("cifar100", "test")
    subs = subjects(args, train, test, ood)
    stages = args.stages.split(",")
    cut = slice(0, args.limit or None)
    test_split = {"images": test.images[test.exact][cut], "labels": test.labels[test.exact][cut]}
    data = {}
    for s in subs:
        d = {"test": cached_logits(s, "test", test_split["images"], test_split["labels"], args.samples, cache),
             "ood": cached_logits(s, "cifar100", ood.images[ood.exact][cut], ood.labels[ood.exact][cut], args.samples,
                                  cache)}
        if s.val is not None:
            d["val"] = cached_logits(s, "val", s.val["images"][cut], s.val["labels"][cut], args.samples, cache)
        data[s.key] = d
    if "uncertainty" in stages:
        uncertainty_stage(subs, data, out)
    if "adaptive" in stages:
        adaptive_stage(subs, data, test_split, out)
    if "recalibration" in stages:
        recalibration_stage(subs, data, test_split, out, cap=args.limit or None)
    if "readme" in stages:
        readme_stage(subs, out, json.loads((out / "adaptive.json").read_text()) if (out / "adaptive.json").exists()
                     else None)
    return 0


if __name__ == "__main__":
    sys.exit(main())
