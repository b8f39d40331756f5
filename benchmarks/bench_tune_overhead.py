"""The study's cost per trial: time waiting for the database against the trial's wall time, side by side for each
storage given, in one process.

Each storage gets the same short search (``swapout tune``: the 20-layer W x 1 swapout network, a few trials of
one or more epochs on a subset of the training images, pruning on). Every trial's worker times its own database
round trips on the training's path (claiming the trial, its attributes, the report and pruning question at every
epoch end, telling the result; heartbeats run in a thread beside the training and are not on its path), and
writes them in its run's trial.json, with the SQL statements the process sent meanwhile (heartbeats included).
This prints, per storage, the trials' mean wall time, database time and statements, and the share: database
time / wall time.

    python benchmarks/bench_tune_overhead.py                                  # SQLite only
    python benchmarks/bench_tune_overhead.py --storage postgresql://postgres@127.0.0.1:5432/bench

The waits grow with the epochs (a report and a pruning question at each epoch end) and so does the training, so
the share of a longer trial is about that of its epochs: a full-recipe trial's is below a short one's.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from pathlib import Path

from swapout.cli.main import main


def measure(storage: str, out: Path, trials: int, epochs: int, train_images: int) -> dict:
    argv = ["tune", "--preset", "short/cpu-20-w1-swapout", "--out", str(out), "--trials", str(trials), "--epochs",
            str(epochs), "--val-split", str(50_000 - train_images), "--eval-limit", "500", "--eval-samples", "2",
            "--summary", "false", "--device", "cpu"] + ([] if storage == "sqlite" else ["--storage", storage])
    assert main(argv) == 0
    records = [json.loads(p.read_text()) for p in sorted(out.glob("trial-*/trial.json"))]
    wall = [r["wall_s"] for r in records]
    engine = [r["engine_s"] for r in records]
    waits = [r["engine_waits"] for r in records]
    statements = [r["sql_statements"] for r in records]
    return {"storage": storage.split("@")[-1] if "@" in storage else storage, "trials": len(records),
            "states": [r["state"] for r in records], "wall_s_mean": round(statistics.mean(wall), 2),
            "engine_s_mean": round(statistics.mean(engine), 4), "waits_mean": round(statistics.mean(waits), 1),
            "statements_mean": round(statistics.mean(statements), 1),
            "share": round(sum(engine) / sum(wall), 6)}


def run() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--storage", action="append", default=[], help="a database URL; repeat for several "
                        "(SQLite in a temporary folder is always measured)")
    parser.add_argument("--trials", type=int, default=4)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--train-images", type=int, default=2000)
    parser.add_argument("--json", help="also write the figures here")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for i, storage in enumerate(["sqlite", *args.storage]):
            rows.append(measure(storage, Path(tmp) / f"s{i}", args.trials, args.epochs, args.train_images))
    print("\n| storage | trials | wall per trial (s) | waiting for the database per trial (s) | SQL statements "
          "per trial | share |")
    print("| --- | --- | --- | --- | --- | --- |")
    for r in rows:
        print(f"| {r['storage']} | {r['trials']} | {r['wall_s_mean']:.1f} | {r['engine_s_mean']:.3f} | "
              f"{r['statements_mean']:.0f} | {100 * r['share']:.3f}% |")
    if args.json:
        Path(args.json).write_text(json.dumps({"config": vars(args), "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    run()
