"""What a sweep is: its runs (presets x seeds x config overrides), their directories and their states.

The definition is recorded in ``SWEEP_DIR/sweep.json`` as ``{"runs": [{"name", "preset", "seeds",
"overrides"}]}``; ``SWEEP_DIR/NAME/seed-S/`` is one run directory per entry and seed. Running a sweep
is `swapout.training.sweep`.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Union

import torch

from ..data.cifar import SPLIT_SIZES
from ..runs.config import TrainConfig, load_preset, merge_preset
from ..runs.experiment import build_model
from ..runs.rundir import RunDir, save_json
from .sweep_packs import Pack, form_packs, run_config
from .train import write_pack

__all__ = ["Run", "Pack", "make_definition", "read_sweep_file", "definition_from", "open_sweep", "plan", "units",
           "train_args"]

# Chosen per run (seed) or per machine (device, data folder), so not part of a sweep's definition.
NOT_OVERRIDES = ("preset", "seed", "device", "data_dir")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*$")
_MAY_BE_NONE = tuple(f.name for f in dataclasses.fields(TrainConfig)
                     if str(f.type).startswith("Optional[") and f.name not in NOT_OVERRIDES)


@dataclass
class Run:
    """One run of a sweep: ``preset`` with config ``overrides`` and ``seed``, in the run directory ``path``."""

    name: str
    preset: str
    seed: int
    overrides: Dict[str, Any]
    path: Path

    label = property(lambda self: f"{self.name}/seed-{self.seed}")

    @property
    def state(self) -> str:
        """``done`` (results.json), ``resume`` (a checkpoint), ``restart`` (a config but no checkpoint: the
        child died before its first one, so nothing is lost by starting again) or ``new``."""
        if (self.path / "results.json").exists():
            return "done"
        if not (self.path / "config.json").exists():
            return "new"
        return "resume" if any((self.path / f).exists() for f in ("checkpoint.pt", "checkpoint.prev.pt")) else "restart"


def epochs_left(unit: Union[Run, Pack]) -> int:
    """The epochs ``unit`` has still to train, an epoch under way counted whole; 0 once it is done, all of them
    when it has no checkpoint to resume from. A pack's runs share one epoch count, the furthest of them (one that
    failed stopped writing its metrics while the others went on)."""
    runs = [r for r in (unit.runs if isinstance(unit, Pack) else [unit]) if r.state != "done"]
    if not runs:
        return 0
    done = 0
    for run in runs:
        rows = RunDir(run.path).read_metrics() if run.state == "resume" else []
        done = max(done, sum(1 for row in rows if not row.get("partial")))
    return max(0, max(_epochs_to_train(r) for r in runs) - done)


def _epochs_to_train(run: Run) -> int:
    """The epochs ``run`` trains in all: its ``epochs``, fewer when ``max_steps`` stops it sooner (a run started
    before knows its steps an epoch; one not yet started counts whole batches of its training images)."""
    cfg = run_config(run.preset, run.overrides, run.seed)
    if cfg.max_steps is None:
        return cfg.epochs
    try:
        per_epoch = int(json.loads((run.path / "config.json").read_text())["resolved"]["steps_per_epoch"])
    except (OSError, ValueError, KeyError, TypeError):
        per_epoch = (SPLIT_SIZES["train"] - cfg.val_split) // cfg.batch_size
    return min(cfg.epochs, -(-cfg.max_steps // max(per_epoch, 1)))


def make_definition(entries: Optional[Sequence[Any]], overrides: Optional[Dict[str, Any]] = None,
                    pack: Optional[int] = None) -> Dict[str, Any]:
    """Check and normalise a sweep's runs; ValueError names the first problem.

    Args:
        entries: ``{"preset": P, "seeds": [0, 1], "overrides": {field: value}, "name": DIR}`` each; only
            ``preset`` is required (seeds default to [0], the name to the preset with "/" as "-"). An
            entry may also name a pack, ``"pack": "NAME"``, to train its runs as one
            (`swapout.training.sweep_packs`).
        overrides: config fields applied to every entry, over the entry's own.
        pack: G >= 1, the most runs per automatic pack (``--pack``); None or 1: none.
    Returns ``{"runs": [...]}`` (and ``"pack": G`` if given) with every key filled in: the form recorded in
    ``SWEEP_DIR/sweep.json``.
    """
    if not isinstance(entries, (list, tuple)) or not entries:
        raise ValueError("a sweep needs at least one run: give --presets, or a --file with a non-empty \"runs\" list")
    if pack is not None and (isinstance(pack, bool) or not isinstance(pack, int) or pack < 1):
        raise ValueError(f"--pack must be an integer >= 1 (the most runs per pack), got {pack!r}")
    runs: List[Dict[str, Any]] = []
    allowed = [f for f in TrainConfig.field_names() if f not in NOT_OVERRIDES]
    for i, entry in enumerate(entries, 1):
        if not isinstance(entry, dict) or not isinstance(entry.get("preset"), str) or \
                set(entry) - {"preset", "seeds", "overrides", "name", "pack"}:
            raise ValueError(f"run {i}: expected {{\"preset\": P, \"seeds\": [...], \"overrides\": {{...}}, \"name\": "
                             f"N, \"pack\": NAME}} (only the preset required), got {entry!r}")
        preset, seeds, where = entry["preset"], entry.get("seeds", [0]), f"run {i} ({entry['preset']})"
        if not isinstance(seeds, list) or not seeds or len(set(seeds)) != len(seeds) or \
                any(isinstance(s, bool) or not isinstance(s, int) or s < 0 for s in seeds):
            raise ValueError(f"{where}: seeds must be distinct integers >= 0, got {seeds!r}")
        if not isinstance(entry.get("overrides") or {}, dict):
            raise ValueError(f"{where}: overrides must be a mapping {{\"field\": value}}, e.g. {{\"epochs\": 30}}, "
                             f"got {entry['overrides']!r}")
        fields = {**(entry.get("overrides") or {}), **(overrides or {})}
        for key, value in fields.items():
            if key not in allowed:
                raise ValueError(f"{where}: {key!r} cannot be overridden in a sweep; fields are {', '.join(allowed)} "
                                 f"(seeds, --device and --data-dir are options of the sweep)")
            if value is None and key not in _MAY_BE_NONE:
                raise ValueError(f"{where}: {key} cannot be overridden with null (only {', '.join(_MAY_BE_NONE)} can)")
        try:
            with torch.device("meta"):  # the model's own checks (depth, schedules) without allocating it
                build_model(TrainConfig.from_dict({**merge_preset(load_preset(preset), fields), "seed": max(seeds)}))
        except ValueError as err:
            raise ValueError(f"{where}: {err}") from None
        name = entry.get("name", preset.replace("/", "-"))
        if not isinstance(name, str) or not _NAME.match(name):
            raise ValueError(f"run {i}: name must be letters, digits, '.', '_' or '-', got {name!r}")
        for other in (r for r in runs if r["name"] == name):
            # one experiment may come back later with other seeds (its seed 1 after every seed 0 of a campaign);
            # anything else under one name would mix two experiments in one directory
            if (other["preset"], other["overrides"]) != (preset, fields):
                raise ValueError(f"run {i}: another run already uses the directory {name!r} for a different "
                                 f"experiment; give one a \"name\"")
            if set(other["seeds"]) & set(seeds):
                raise ValueError(f"run {i}: {name!r} already has seed(s) "
                                 f"{', '.join(map(str, sorted(set(other['seeds']) & set(seeds))))}; an entry that "
                                 f"repeats an experiment must add other seeds")
        runs.append({"name": name, "preset": preset, "seeds": list(seeds), "overrides": fields})
        if "pack" in entry:
            if not isinstance(entry["pack"], str) or not _NAME.match(entry["pack"]):
                raise ValueError(f"run {i}: pack must be letters, digits, '.', '_' or '-', got {entry['pack']!r}")
            runs[-1]["pack"] = entry["pack"]
    definition = {"runs": runs, **({"pack": pack} if pack is not None else {})}
    units(definition, Path("."))  # every pack can be formed: ValueError names the one that cannot
    return definition


def read_sweep_file(path: Union[str, os.PathLike[str]], overrides: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    """The definition in a sweep file ``{"runs": [...]}`` (see `make_definition`)."""
    try:
        try:
            data = json.loads(Path(path).read_text())
        except json.JSONDecodeError as err:
            raise ValueError(f'not JSON ({err}); a sweep file holds {{"runs": [...]}}') from None
        if not isinstance(data, dict) or set(data) - {"runs", "pack"}:
            unknown = f"; unknown: {', '.join(map(repr, sorted(set(data) - {'runs', 'pack'})))}" \
                if isinstance(data, dict) else ""
            raise ValueError('a sweep file holds {"runs": [...]} (and optionally "pack": G)' + unknown +
                             ' (config fields for every run go in each run\'s "overrides", or on the command line)')
        return make_definition(data.get("runs"), overrides, data.get("pack"))
    except (OSError, ValueError) as err:
        raise ValueError(f"{path}: {err}") from None


def definition_from(presets: Optional[List[str]], seeds: Optional[List[int]], file: Optional[str],
                    overrides: Dict[str, Any], pack: Optional[int] = None) -> Optional[Dict[str, Any]]:
    """The definition that ``swapout sweep``'s options give: presets x seeds, or a sweep file, with config
    ``overrides`` for every run and ``pack`` (``--pack G``); None (continue the recorded sweep) when
    neither presets nor a file is given."""
    if "seed" in overrides:
        raise ValueError("--seed: a sweep takes --seeds, e.g. --seeds 0,1,2")
    if file and (presets or seeds):
        raise ValueError("give --presets (and --seeds) or --file, not both")
    if file:
        definition = read_sweep_file(file, overrides)
        if pack is not None:
            definition = make_definition(definition["runs"], None, pack)
        return definition
    if presets:
        return make_definition([{"preset": p, "seeds": seeds or [0]} for p in presets], overrides, pack)
    if overrides or seeds or pack is not None:
        raise ValueError("config options, --seeds and --pack need --presets or --file (the packs of a sweep are "
                         "recorded in its sweep.json: give --out alone to continue it)")
    return None


def _summary(definition: Dict[str, Any]) -> str:
    return "; ".join(f"{r['name']} seeds {','.join(map(str, r['seeds']))}"
                     + "".join(f" {k}={v}" for k, v in r["overrides"].items()) for r in definition["runs"]) + \
        (f"; packs of {definition['pack']}" if "pack" in definition else "")


def open_sweep(sweep_dir: Union[str, os.PathLike[str]], definition: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    """The sweep in ``sweep_dir``: its recorded definition, or ``definition``, recorded there if it is new.

    A ``definition`` that differs from the recorded one is refused (ValueError): one directory, one sweep.
    """
    path = Path(sweep_dir) / "sweep.json"
    if Path(sweep_dir).exists() and not Path(sweep_dir).is_dir():
        raise ValueError(f"--out {sweep_dir} is a file: it must name a sweep's directory, new or existing")
    if path.exists():
        saved = read_sweep_file(path)
        if definition is not None and definition != saved:
            raise ValueError(f"{sweep_dir} holds a different sweep (recorded: {_summary(saved)}; given: "
                             f"{_summary(definition)}); continue it with 'swapout sweep --out {sweep_dir}', "
                             f"or choose another --out")
        return saved
    if definition is None:
        raise ValueError(f"{sweep_dir} holds no sweep.json: give --presets (and --seeds) or --file to start one")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        save_json(definition, path)
    except OSError as err:
        raise ValueError(f"cannot write the sweep directory {sweep_dir}: {err.strerror}; --out must name a "
                         f"directory that can be created and written") from None
    return definition


def plan(definition: Dict[str, Any], sweep_dir: Union[str, os.PathLike[str]]) -> List[Run]:
    """Every run of the sweep, in order (entries, then seeds); each knows its `Run.state`."""
    return [Run(r["name"], r["preset"], seed, r["overrides"], Path(sweep_dir) / r["name"] / f"seed-{seed}")
            for r in definition["runs"] for seed in r["seeds"]]


def units(definition: Dict[str, Any], sweep_dir: Union[str, os.PathLike[str]]) -> List[Union[Run, Pack]]:
    """The sweep's units of work, in order: runs alone, and packs of runs (see `swapout.training.sweep_packs`)."""
    runs = plan(definition, sweep_dir)
    named = {f"{r['name']}/seed-{seed}": r["pack"] for r in definition["runs"] if "pack" in r for seed in r["seeds"]}
    return form_packs(runs, definition.get("pack") or 1, named, Path(sweep_dir))


def train_args(unit: Union[Run, Pack], device: str, data_dir: Optional[str] = None) -> List[str]:
    """The ``swapout train`` arguments that start ``unit`` (state new) or continue it (state resume).

    A pack's runs get their configs through ``pack.json``, written here when the pack starts.
    """
    args = ["train", "--quiet", "--device", device] + (["--data-dir", str(data_dir)] if data_dir else [])
    if isinstance(unit, Pack):
        if unit.state != "resume":
            write_pack(unit.path, [run_config(r.preset, r.overrides, r.seed) for r in unit.runs],
                       [r.path for r in unit.runs])
        return args + ["--pack-dir", str(unit.path)]
    if unit.state == "resume":
        return args + ["--resume", str(unit.path)]
    # the config itself, typed as JSON, rather than options for the child to parse back from text
    config = {k: v for k, v in run_config(unit.preset, unit.overrides, unit.seed).to_dict().items()
              if k not in ("device", "data_dir")}  # the sweep gives these, above
    return args + ["--config-json", json.dumps(config), "--out", str(unit.path)]
