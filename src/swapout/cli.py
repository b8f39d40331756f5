"""The ``swapout`` command line."""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time
from typing import List, Optional

import torch


class UsageError(ValueError):
    """A mistake in what the user asked for: reported in one line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    """argparse, but a bad command line gets one line: what was wrong and where to look."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


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


def _config_options(parser: argparse.ArgumentParser) -> None:
    """One --option per TrainConfig field; only options actually given end up in the namespace."""
    from .config import TrainConfig

    group = parser.add_argument_group("config fields (override the preset or the paper's defaults)")
    for f in dataclasses.fields(TrainConfig):
        if f.name == "preset":
            continue
        kind = {"int": int, "float": float, "bool": _boolean}.get(str(f.type).replace("Optional[", "").rstrip("]"), str)
        if f.name == "milestones":
            kind = _int_list
        group.add_argument(f"--{f.name.replace('_', '-')}", dest=f.name, type=kind, default=argparse.SUPPRESS,
                           metavar=f.name.upper(), help=f"default: {f.default!r}")


def _boolean(text: str) -> bool:
    if text.lower() in ("1", "true", "yes", "on"):
        return True
    if text.lower() in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def _int_list(text: str) -> list:
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated epochs like 196,224, got {text!r}") from None


def _overrides(args: argparse.Namespace) -> dict:
    from .config import TrainConfig

    return {k: v for k, v in vars(args).items() if k in TrainConfig.field_names() and k != "preset"}


def _train(args: argparse.Namespace) -> None:
    from .config import TrainConfig, load_preset
    from .rundir import RunDir
    from .train import TrainingStopped, train

    overrides = _overrides(args)
    if args.resume:
        run = RunDir(args.resume)
        saved = run.read_config()
        given = {**overrides, **({"preset": args.preset} if args.preset else {})}
        try:
            cfg = TrainConfig.for_resume(saved, given)
        except ValueError as err:
            raise UsageError(f"--resume {args.resume}: {err}") from None
        out = run.path
    else:
        values = load_preset(args.preset) if args.preset else {}
        cfg = TrainConfig.from_dict({**values, **overrides}).validate()
        name = (cfg.preset or f"{cfg.model}-{cfg.depth}-w{cfg.width}-{cfg.method}").replace("/", "-")
        out = args.out or f"runs/{name}-{time.strftime('%Y%m%d-%H%M%S')}"
    try:
        results = train(cfg, out, resume=bool(args.resume), progress=not args.quiet)
    except TrainingStopped as err:
        print(f"swapout train: {err}", file=sys.stderr)
        raise SystemExit(1)
    finally:
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()
    if "stopped" in results or int(os.environ.get("RANK", "0")) != 0:
        return
    from .report import report_table

    print(report_table([out]))


def _eval(args: argparse.Namespace) -> None:
    from .evaluate_run import evaluate_run

    evaluate_run(args.target, split=args.split, samples=args.samples, repeats=args.repeats, limit=args.limit,
                 device=args.device, data_dir=args.data_dir, progress=not args.quiet)


def _presets(args: argparse.Namespace) -> None:
    from .config import list_presets

    rows = ["| preset | paper row | dataset | model | depth | width | method | paper error (%) |",
            "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for name, p in list_presets().items():
        c, paper = p["config"], p["paper"]
        err = ", ".join(f"{k.replace('_error', '').replace('error', 'reported')} {v}" for k, v in paper.items()) or "-"
        rows.append(f"| {name} | {p['row']} | {c.get('dataset', 'cifar10')} | {c.get('model')} | {c.get('depth')} | "
                    f"{c.get('width')} | {c.get('method')} | {err} |")
    print("\n".join(rows))


def _report(args: argparse.Namespace) -> None:
    from .report import report_table

    print(report_table(args.runs))


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="swapout", description="Swapout (Singh et al., NeurIPS 2016) for PyTorch.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    tr = sub.add_parser("train", help="train a model with the paper's recipe, then evaluate it both ways",
                        description="Train with the paper's recipe (or a preset), checkpointing as it goes, then "
                                    "evaluate with deterministic and stochastic inference.")
    tr.add_argument("--preset", help="a row of the paper, e.g. table1/swapout-v2-w2 (see 'swapout presets')")
    tr.add_argument("--out", help="run directory (default: runs/<preset>-<time>)")
    tr.add_argument("--resume", metavar="RUN_DIR", help="continue an interrupted run exactly where it stopped")
    tr.add_argument("--quiet", action="store_true", help="no progress bar")
    _config_options(tr)
    tr.set_defaults(func=_train)

    ev = sub.add_parser("eval", help="deterministic and stochastic error of a run, and the Figure 2 analysis")
    ev.add_argument("target", metavar="RUN_DIR_OR_CHECKPOINT")
    ev.add_argument("--split", default="test", choices=["test", "val"], help="default: test")
    ev.add_argument("--samples", type=int, default=30, help="stochastic passes (default 30)")
    ev.add_argument("--repeats", type=int, default=10,
                    help="repetitions for the error-vs-passes curve (the paper used 30; 0 skips the curve)")
    ev.add_argument("--limit", type=int, help="evaluate on the first N images of the split only")
    ev.add_argument("--device", default=None, help="default: the run's device setting")
    ev.add_argument("--data-dir", default=None)
    ev.add_argument("--quiet", action="store_true")
    ev.set_defaults(func=_eval)

    sub.add_parser("presets", help="list the presets with the paper's reported errors").set_defaults(func=_presets)

    rp = sub.add_parser("report", help="a markdown table of runs beside the paper's figures")
    rp.add_argument("runs", nargs="+", metavar="RUN_DIR")
    rp.set_defaults(func=_report)

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
    except ValueError as err:  # UsageError, DataError, CheckpointError and bad arguments are all ValueErrors
        print(f"swapout {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"swapout {args.command}: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
