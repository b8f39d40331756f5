"""When the data shifts: the shared swapout and ResNet models on corrupted CIFAR-10 test images.

Evaluates both shared state dicts with :func:`swapout.evaluation.shift.evaluate_shift` on corrupted copies
(generated in the manner of CIFAR-10-C) of the first ``--limit`` exact CIFAR-10 test images, every
corruption at every severity, and writes to ``--out`` one JSON per model, a JSON of paired
comparisons between the models, the figure and a README with the per-severity tables:

    python experiments/shift_study.py --swapout-state ../shared/models/swapout-v2-20-w1-linear-1-0.5.pt \\
        --resnet-state ../shared/models/resnet-v2-ours-20-w1.pt --out results/shift

The shared models saw all 50,000 training images, so their temperatures are fitted on the next
``--calibration`` clean exact test images, which the corrupted evaluation does not use. Corrupted
sets and every set's logits are cached under ``$SWAPOUT_CACHE`` (see ``swapout.cache``): a study
that is interrupted resumes where it stopped.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

import swapout
from swapout.data.corruptions import BENCHMARK, SEVERITIES
from swapout.data.files import load_split
from swapout.evaluation.shift import bootstrap_means, plot_shift
from swapout.runs.rundir import save_json

MODELS = {
    "swapout": ("swapout", "the shared swapout v2 20-layer W x 1, Linear(1, 0.5)",
                dict(method="swapout", theta1="linear(1,0.5)", theta2="linear(1,0.5)")),
    "resnet": ("ResNet", "the shared ResNet v2 20-layer W x 1 (same structure)", dict(method="resnet")),
}


def _list(kind):
    return lambda text: [kind(v) for v in text.split(",") if v.strip()]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--swapout-state", required=True, help="state dict of the shared swapout model")
    parser.add_argument("--resnet-state", required=True, help="state dict of the shared ResNet")
    parser.add_argument("--out", default="results/shift")
    parser.add_argument("--limit", type=int, default=500, help="exact test images evaluated (corrupted)")
    parser.add_argument("--calibration", type=int, default=1000,
                        help="the next exact test images, clean, for fitting the temperatures")
    parser.add_argument("--samples", type=int, default=10, help="stochastic passes of the swapout model")
    parser.add_argument("--corruptions", type=_list(str), default=list(BENCHMARK))
    parser.add_argument("--severities", type=_list(int), default=list(SEVERITIES))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--resamples", type=int, default=200, help="bootstrap resamples")
    args = parser.parse_args(argv)
    command = "python experiments/shift_study.py " + " ".join(sys.argv[1:] if argv is None else argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    test = load_split("cifar10", "test")
    images, labels = test.images[test.exact], test.labels[test.exact]
    x, y = images[:args.limit], labels[:args.limit]
    cal = (images[args.limit:args.limit + args.calibration], labels[args.limit:args.limit + args.calibration])
    results, probs, start = {}, {}, time.time()
    for key, path in (("swapout", args.swapout_state), ("resnet", args.resnet_state)):
        label, description, kwargs = MODELS[key]
        model = swapout.create_model("resnet_v2_ours", depth=20, width=1, num_classes=10, **kwargs)
        model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
        t0 = time.time()
        samples = args.samples if key == "swapout" else 0
        print(f"{label}: {len(args.corruptions)} corruptions x {len(args.severities)} severities, {len(y):,} images, "
              f"{samples} passes", flush=True)
        res = swapout.evaluate_shift(model.eval(), x, y, dataset="cifar10", corruptions=args.corruptions,
                                     severities=args.severities, samples=samples, seed=args.seed,
                                     calibration=cal, resamples=args.resamples, keep_probs=True)
        probs[key] = res.pop("probs")
        res.update(model=description, command=command, seconds=round(time.time() - t0, 1),
                   images_note=f"the first {len(y):,} of the 9,980 exact CIFAR-10 test images; temperatures "
                               f"fitted on the next {len(cal[1]):,} (clean)")
        results[key] = res
        save_json(res, out / f"shift-{key}.json")
        print(f"{label}: {res['seconds']:.0f} s", flush=True)
    comparison = compare(probs, torch.as_tensor(y).long(), args.resamples, args.seed)
    save_json({"command": command, "seconds_total": round(time.time() - start, 1), "intervals": comparison,
               "note": "paired 95% bootstrap intervals (basic) of the mean over corruptions, per severity (0 = "
                       "clean), of each mode minus swapout's stochastic inference; both models on the same images"},
              out / "comparison.json")
    plot_shift({"swapout": results["swapout"], "ResNet": results["resnet"]}, out / "shift.png",
               f"corrupted CIFAR-10 (in the manner of CIFAR-10-C), {len(y):,} images per set, mean over "
               f"{len(args.corruptions)} corruptions; swapout {args.samples} passes")
    write_readme(out, results, comparison, command, time.time() - start)
    print(f"written to {out}: {time.time() - start:.0f} s in all", flush=True)
    return 0


def compare(probs, labels, resamples: int, seed: int) -> dict:
    """Paired intervals across the two models: every mode of both minus swapout's stochastic inference."""
    out = {}
    for s, cells in probs["swapout"].items():
        merged = [{**{f"swapout {m}": p for m, p in a.items() if m != "stochastic"}, "stochastic": a["stochastic"],
                   **{f"ResNet {m}": p for m, p in b.items()}} for a, b in zip(cells, probs["resnet"][s])]
        out[str(s)] = bootstrap_means(merged, labels, resamples, seed + int(s))
    return out


COLUMNS = [("swapout", "deterministic"), ("swapout", "deterministic+T"), ("swapout", "stochastic"),
           ("swapout", "stochastic+T"), ("resnet", "deterministic"), ("resnet", "deterministic+T")]
RIVALS = [("swapout deterministic", "its own deterministic inference", ("swapout", "deterministic")),
          ("swapout deterministic+T", "its deterministic inference + temperature", ("swapout", "deterministic+T")),
          ("ResNet deterministic+T", "the ResNet + temperature", ("resnet", "deterministic+T"))]
WHAT = {"ece": ("ECE", "points", "{:.2f}"), "nll": ("NLL", "nats", "{:.3f}"), "error": ("error", "points", "{:.2f}")}


def _name(model: str, mode: str) -> str:
    return ("swapout " if model == "swapout" else "ResNet ") + mode.replace("+T", " + T")


def _tables(results) -> list:
    lines = []
    for k, (title, unit, fmt) in WHAT.items():
        lines += [f"**{title}** ({'%' if unit == 'points' else unit}; mean over corruptions; clean = the same images "
                  f"uncorrupted)", "", "| severity | " + " | ".join(_name(*c) for c in COLUMNS) + " |",
                  "|---" * (len(COLUMNS) + 1) + "|"]
        for s in results["swapout"]["summary"]:
            row = [fmt.format(results[m]["summary"][s][mode][k]) for m, mode in COLUMNS]
            lines.append(f"| {'clean' if s == '0' else s} | " + " | ".join(row) + " |")
        lines.append("")
    return lines


def _answer(results, comparison) -> list:
    """Per severity and rival, stochastic minus rival with its paired interval, and what it says."""
    lines = ["| severity | compared with | ECE difference (points) | NLL difference | error difference (points) |",
             "|---|---|---|---|---|"]
    for s, modes in comparison.items():
        for rival, words, (model, mode) in RIVALS:
            cells = []
            for k, (_, _, fmt) in WHAT.items():
                lo, hi = (-v for v in modes[rival][f"{k}_minus_stochastic_interval"][::-1])
                mid = (results["swapout"]["summary"][s]["stochastic"][k] - results[model]["summary"][s][mode][k])
                verdict = "lower" if hi < 0 else "higher" if lo > 0 else "no clear difference"
                cells.append(f"{fmt.format(mid)} [{fmt.format(lo)}, {fmt.format(hi)}]: {verdict}")
            lines.append(f"| {'clean' if s == '0' else s} | {words} | " + " | ".join(cells) + " |")
    return lines


def write_readme(out: Path, results, comparison, command: str, seconds: float) -> None:
    sw = results["swapout"]
    st = sw["settings"]
    n = st["images"]
    text = [
        "# When the data shifts: the shared models on corrupted CIFAR-10", "",
        f"Command (from the repository root; the study took {seconds / 60:.1f} min on 2 CPU cores shared with "
        f"other work, both models, the corrupted sets generated on the way):", "", "```", command, "```", "",
        f"- Images: {sw['images_note']}. Every corrupted set holds the same {n:,} images.",
        f"- Corruptions ({len(st['corruptions'])}, generated in the manner of CIFAR-10-C with its parameters, not "
        f"the published files): {', '.join(st['corruptions'])}; severities {', '.join(map(str, st['severities']))}; "
        f"seed {st['seed']}.",
        f"- Swapout: deterministic inference and stochastic inference with {st['samples']} passes; the ResNet has "
        f"no random masks (deterministic only). `+ T`: the temperature fitted on the clean held-out images "
        f"(swapout deterministic {sw['temperature']['deterministic']['values'][0]:.3f}, stochastic "
        f"{sw['temperature']['stochastic']['values'][0]:.3f}; ResNet "
        f"{results['resnet']['temperature']['deterministic']['values'][0]:.3f}).",
        f"- Intervals: a single error rate measured on {n:,} images has a 95% interval of up to "
        f"±{sw['intervals']['error_95_halfwidth_at_50_percent']:.1f} points (±"
        f"{sw['intervals']['error_95_halfwidth_at_10_percent']:.1f} at 10% error); every cell of the JSON carries "
        f"its Wilson interval. Means over corruptions carry 95% bootstrap intervals over the images in the JSON "
        f"files; differences between modes and models are paired (same images, same resamples) and much "
        f"tighter, below.", "",
        "![ECE and error against severity](shift.png)", "", *_tables(results),
        "## Stochastic swapout against the others (stochastic minus other; negative = stochastic is lower = better)",
        "", f"Mean over corruptions of the difference, with its paired 95% bootstrap interval "
        f"({st['bootstrap']} resamples of the {n:,} images).", "", *_answer(results, comparison), "",
        "Files: `shift-swapout.json`, `shift-resnet.json` (every corruption and severity, every mode: error with "
        "its Wilson interval, NLL, Brier, ECE; per-severity means with intervals; temperatures; settings), "
        "`comparison.json` (the paired intervals above), `shift.png`.", ""]
    (out / "README.md").write_text("\n".join(text))


if __name__ == "__main__":
    sys.exit(main())
