"""Implicit against explicit ensembles at equal inference cost, on the CPU replication's 32-epoch networks.

    python experiments/cpu_replication/ensembles.py          # ensembles.json and ensembles.png beside the runs

K stochastic passes of one swapout network (Linear(1, 0.5)) against the mean of K ResNets trained with
different seeds, for K = 1 and 2 (the same number of forward passes), and 30 swapout passes; deterministic
swapout inference for reference. Error, NLL and ECE (15 bins) on the 9,980 exact test images and on three
corruptions at severities 3 and 5 (`swapout.data.shifted`, generated in the manner of CIFAR-10-C).

How the rows are formed (each a mean over what the runs allow, so that no single draw decides it):
- swapout, K passes: every seed's 30 passes cut into disjoint groups of K, each group's mean softmax
  scored, the metrics averaged over groups and seeds;
- ResNet, 1 network: the metrics of each seed's network, averaged;
- ResNet ensemble of K: the mean softmax of K seeds' networks (seeds 0..K-1).

Each swapout network's masks are seeded with its run's seed.

The corruptions are chosen by kind before any was measured (a noise, a blur, a digital one), not by
their results. Logits are cached (not in the repository) so that an interrupted call continues.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import statistics
import time
from pathlib import Path
from typing import Dict, List

import numpy as np
import torch

from swapout.cache import cache_dir
from swapout.data import MEAN, STD, load_split
from swapout.data.shifted import images_digest, shifted_images
from swapout.evaluation.errors import split_logits
from swapout.evaluation.uncertainty import calibration_metrics, probabilities
from swapout.runs.config import TrainConfig
from swapout.runs.evaluate import load_target
from swapout.runs.experiment import build_model

HERE = Path(__file__).resolve().parents[2] / "results" / "cpu-replication"
CORRUPTIONS = ("gaussian_noise", "defocus_blur", "contrast")
SEVERITIES = (3, 5)
PASSES = 30


def load_network(run_dir: Path) -> torch.nn.Module:
    state, _, _, _ = load_target(str(run_dir))
    model = build_model(TrainConfig.from_dict(state["config"]))
    model.load_state_dict(state["model"])
    return model.eval()


def cached_logits(run_dir: Path, model: torch.nn.Module, name: str, images: np.ndarray, labels: np.ndarray,
                  samples: int, seed: int) -> Dict[str, torch.Tensor]:
    """The network's logits on one set: deterministic, and ``samples`` passes; cached by weights and images."""
    digest = hashlib.sha256(str(run_dir.resolve()).encode() + images_digest(images).encode()
                            + (run_dir / "results.json").read_bytes()).hexdigest()[:16]
    path = cache_dir() / "cpu-replication" / f"{name}-{samples}-{seed}-{digest}.pt"
    if path.exists():
        out = torch.load(path, weights_only=True)
        if out["deterministic"].shape[0] == len(labels) and (not samples or out["passes"].shape[0] == samples):
            return out
    torch.manual_seed(seed)
    out = split_logits(model, images, labels, MEAN["cifar10"], STD["cifar10"], torch.device("cpu"), samples)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(out, path.with_suffix(".tmp"))
    path.with_suffix(".tmp").replace(path)
    return out


def run_seed(run_dir: Path) -> int:
    return int(run_dir.name.split("-", 1)[1])


def metrics(probs: torch.Tensor, labels: torch.Tensor) -> Dict[str, float]:
    m = calibration_metrics(probs, labels)
    return {k: m[k] for k in ("error", "nll", "ece")}


def averaged(rows: List[Dict[str, float]]) -> Dict[str, float]:
    return {k: round(statistics.mean(r[k] for r in rows), 4) for k in rows[0]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=Path, default=HERE / "runs", help="the campaign's sweep directory")
    parser.add_argument("--out", type=Path, default=HERE, help="where ensembles.json and .png go")
    parser.add_argument("--limit", type=int, default=None, help="the first N exact test images only (a quick check)")
    parser.add_argument("--passes", type=int, default=PASSES, help="stochastic passes per image")
    parser.add_argument("--data-dir", default=None, help="CIFAR-10 (default: swapout's usual search)")
    args = parser.parse_args()
    swap_dirs = sorted(d for d in (args.runs / "linear-1-0.5-32ep").glob("seed-*") if (d / "results.json").exists())
    res_dirs = sorted(d for d in (args.runs / "resnet-32ep").glob("seed-*") if (d / "results.json").exists())
    if not swap_dirs or len(res_dirs) < 2:
        parser.error(f"needs a finished linear-1-0.5-32ep run and two finished resnet-32ep runs under {args.runs}; "
                     f"found {len(swap_dirs)} and {len(res_dirs)}")
    if args.passes < 2:
        parser.error("--passes must be at least 2 (K = 2 needs two)")
    began = time.time()
    test = load_split("cifar10", "test", args.data_dir)
    images, labels = test.images[test.exact], test.labels[test.exact]
    if args.limit:
        images, labels = images[:args.limit], labels[:args.limit]
    sets = {"clean": images}
    for c in CORRUPTIONS:
        for s in SEVERITIES:
            sets[f"{c}-{s}"] = shifted_images(images, c, s, seed=0)
    y = torch.as_tensor(labels, dtype=torch.long)
    networks = {d: load_network(d) for d in swap_dirs + res_dirs}
    table: Dict[str, Dict[str, Dict[str, float]]] = {}
    for set_name, set_images in sets.items():
        print(f"{set_name}: {len(y):,} images", flush=True)
        # each swapout network's masks are seeded with its run's seed, so that averaging over seeds also
        # averages over mask draws
        swap = [cached_logits(d, networks[d], set_name, set_images, labels, args.passes, run_seed(d))
                for d in swap_dirs]
        res = [cached_logits(d, networks[d], set_name, set_images, labels, 0, 0) for d in res_dirs]
        rows = {}
        for k in (1, 2):
            rows[f"swapout, {k} pass{'es' if k > 1 else ''}|{k}"] = averaged(
                [metrics(probabilities(s["passes"][i:i + k]), y) for s in swap
                 for i in range(0, args.passes - k + 1, k)])
            nets = [probabilities(r["deterministic"]) for r in res]
            rows[f"ResNet, {'1 network' if k == 1 else f'ensemble of {k} seeds'}|{k}"] = averaged(
                [metrics(p, y) for p in nets]) if k == 1 else averaged([metrics(torch.stack(nets[:k]).mean(0), y)])
        rows[f"swapout, {args.passes} passes|{args.passes}"] = averaged(
            [metrics(probabilities(s["passes"]), y) for s in swap])
        rows["swapout, deterministic|1"] = averaged([metrics(probabilities(s["deterministic"]), y) for s in swap])
        table[set_name] = rows
    names = list(table["clean"])
    result = {"sets": list(sets), "images": int(len(y)), "swapout_seeds": [d.name for d in swap_dirs],
              "resnet_seeds": [d.name for d in res_dirs], "passes": args.passes, "corruptions": list(CORRUPTIONS),
              "severities": list(SEVERITIES), "seconds": round(time.time() - began),
              "note": f"{len(swap_dirs)} swapout seed(s), {len(res_dirs)} ResNet seeds, {len(y):,} exact test images; "
                      "corrupted sets generated from seed 0 in the manner of CIFAR-10-C.",
              "rows": [{"contender": n.split("|")[0], "passes": int(n.split("|")[1]),
                        "sets": {s: table[s][n] for s in sets}} for n in names]}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "ensembles.json").write_text(json.dumps(result, indent=2) + "\n")
    plot(result, args.out / "ensembles.png")
    print(f"written {args.out / 'ensembles.json'} and ensembles.png ({result['seconds']} s)")


def plot(result: Dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(12, 3.8), dpi=110)
    x = np.arange(len(result["sets"]))
    for row in result["rows"]:
        # markers only: the sets are categories, not points on a line
        style = "o" if row["contender"].startswith("swapout") else "s"
        for ax, metric in zip(axes, ("error", "nll", "ece")):
            ax.plot(x, [row["sets"][s][metric] for s in result["sets"]], style, ms=5, alpha=0.8,
                    label=row["contender"] if ax is axes[0] else None)
    for ax, title in zip(axes, ("error (%)", "NLL (nats)", "ECE (%)")):
        ax.set_xticks(x)
        ax.set_xticklabels(result["sets"], rotation=45, ha="right", fontsize=7)
        ax.set_title(title, fontsize=9)
        ax.grid(alpha=0.3)
    fig.legend(loc="lower center", ncol=len(result["rows"]), fontsize=7, frameon=False)
    fig.suptitle(f"Implicit (swapout passes) against explicit (ResNet seeds) ensembles, 32 epochs, W x 1; "
                 f"{result['images']:,} test images", fontsize=9)
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    fig.savefig(path)
    plt.close(fig)


if __name__ == "__main__":
    main()
