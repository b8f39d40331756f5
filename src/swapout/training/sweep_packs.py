"""Which runs of a sweep train together as one packed network (`swapout.training.packing`).

``swapout sweep --pack G`` packs runs that may share a network: the same data, architecture, batch
size, epochs and learning-rate schedule (every config field but `TrainConfig.PACK_MAY_DIFFER`)
and joins whose masks combine X and F(X) the same way (a pair of independent masks for resnet, swapout,
dropout, residual dropout and stochastic depth; SkipForward's one coupled mask, on the same input). Keep
probabilities and granularities may differ: each run's masks are drawn at its own. Runs are taken in the
sweep's order and each group is cut into packs of at most G; a sweep file may also name a pack for an
entry (``"pack": "NAME"``), which puts all its runs, and those of every entry naming the same pack, into
that one pack, or refuses if they cannot share it.

    SWEEP_DIR/packs/NAME/pack.json      the pack's runs: their directories and configs
    SWEEP_DIR/packs/NAME/checkpoint.pt  the packed network's checkpoint (the runs keep plain ones)
    SWEEP_DIR/packs/NAME/train.log      the pack's output
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Sequence, Tuple, Union

import torch

from ..layers import SwapoutJoin
from ..runs.config import TrainConfig, load_preset, merge_preset
from ..runs.experiment import build_model
from .packing import join_kind, pack

__all__ = ["Pack", "run_config", "form_packs", "check_packable"]


@dataclass
class Pack:
    """Runs of a sweep (`swapout.training.sweep_plan.Run`) trained together in the pack directory ``path``."""

    runs: List[Any]
    path: Path

    label = property(lambda self: f"{self.path.name} ({', '.join(r.label for r in self.runs)})")

    @property
    def state(self) -> str:
        """``done`` when every run has results, ``resume`` with a pack checkpoint, ``restart`` when a run
        has a config but the pack no checkpoint (it died before its first), else ``new``."""
        if all(r.state == "done" for r in self.runs):
            return "done"
        if any((self.path / f).exists() for f in ("checkpoint.pt", "checkpoint.prev.pt")):
            return "resume"
        return "restart" if any(r.state != "new" for r in self.runs) else "new"


def run_config(preset: str, overrides: Dict[str, Any], seed: int) -> TrainConfig:
    """The config a sweep's run trains with (the machine's device and data folder are given at launch)."""
    return TrainConfig.from_dict({**merge_preset(load_preset(preset), overrides), "seed": seed})


def _join_kinds(cfg: TrainConfig) -> Tuple[Tuple[str, ...], ...]:
    with torch.device("meta"):
        return tuple(join_kind(m) for m in build_model(cfg).modules() if isinstance(m, SwapoutJoin))


def _pack_key(cfg: TrainConfig) -> str:
    shared = {k: v for k, v in cfg.to_dict().items() if k not in TrainConfig.PACK_MAY_DIFFER}
    return json.dumps([shared, _join_kinds(cfg)], sort_keys=True)


def check_packable(cfgs: Sequence[TrainConfig], name: str) -> None:
    """ValueError naming the problem if the runs ``cfgs`` cannot train as one pack called ``name``."""
    try:
        TrainConfig.check_pack(cfgs)
    except ValueError as err:
        raise ValueError(f"pack {name!r}: {err}") from None
    kinds = {_join_kinds(cfg) for cfg in cfgs}
    if len(kinds) > 1:
        methods = sorted({c.method if c.method != "skipforward" else f"skipforward on {c.skipforward_on}"
                          for c in cfgs})
        raise ValueError(f"pack {name!r}: its runs' joins combine X and F(X) differently (methods "
                         f"{', '.join(methods)}); resnet, swapout, dropout, residual_dropout and stochastic_depth "
                         f"pack together, at any keep probabilities and granularities, skipforward only with "
                         f"skipforward on the same input")
    # a real pack of two on the CPU: the check that the packed network computes what the runs would
    models = []
    for cfg in (list(cfgs) * 2)[:2]:
        models.append(build_model(cfg))
    try:
        pack(models)
    except ValueError as err:
        raise ValueError(f"pack {name!r}: {err}") from None


def form_packs(runs: Sequence[Any], size: int, named: Dict[str, str], sweep_dir: Path) -> List[Union[Any, Pack]]:
    """The sweep's units of work, in its order: a run alone, or a `Pack` of runs.

    Args:
        runs: the sweep's runs (`swapout.training.sweep_plan.Run`), in order.
        size: G, the most runs per automatic pack; 1 packs nothing automatically.
        named: run label to pack name, for the runs whose sweep-file entry names a pack.
        sweep_dir: the sweep's directory; packs live in ``sweep_dir/packs/NAME``.

    ValueError if a pack cannot be formed (see `check_packable`).
    """
    groups: Dict[Tuple[str, str], List[Any]] = {}
    for run in runs:
        key = ("named", named[run.label]) if run.label in named else \
            ("auto", _pack_key(run_config(run.preset, run.overrides, run.seed))) if size > 1 else ("solo", run.label)
        groups.setdefault(key, []).append(run)
    units, number = [], 0
    for (kind, name), members in groups.items():
        chunks = [members] if kind == "named" else [members[i:i + size] for i in range(0, len(members), size)]
        for chunk in chunks:
            if len(chunk) == 1 and kind != "named":
                units.append(chunk[0])
                continue
            number += kind == "auto"
            units.append(Pack(chunk, sweep_dir / "packs" / (name if kind == "named" else f"pack-{number}")))
            check_packable([run_config(r.preset, r.overrides, r.seed) for r in chunk], units[-1].path.name)
    order = {id(r): i for i, r in enumerate(runs)}
    return sorted(units, key=lambda u: min(order[id(r)] for r in (u.runs if isinstance(u, Pack) else [u])))
