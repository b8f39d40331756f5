"""The training recipe of section 4, and the presets against the paper's Tables 1-5."""

import math
from dataclasses import dataclass
from typing import Optional, Tuple

import pytest
import torch

from swapout.runs import config
from swapout.runs.config import TrainConfig
from swapout.runs.experiment import build_model

# -- the learning-rate schedule and the recipe's defaults ----------------------------------------------

def test_learning_rate_schedule_of_the_paper():
    # "Starting from an initial learning rate of 0.1, we drop it by a factor of 10 after 196 epochs and
    # then again after 224 epochs", of 256. Epochs are counted from 0 in the code: epochs 0..195 are the
    # first 196, so epoch 196 (the 197th) is the first at 0.01 and epoch 224 (the 225th) the first at 0.001.
    cfg = TrainConfig()
    expected = [0.1] * 196 + [0.01] * 28 + [0.001] * 32
    assert len(expected) == cfg.epochs == 256
    for epoch, lr in enumerate(expected):
        assert cfg.learning_rate(epoch) == pytest.approx(lr, rel=1e-12), epoch
        assert config.learning_rate(cfg, epoch) == pytest.approx(lr, rel=1e-12), epoch


def test_learning_rate_milestones_scale_with_epochs_or_are_given():
    # 196 and 224 of 256, scaled: 100 epochs -> 76.6 and 87.5, rounded to 77 and 88
    short = TrainConfig(epochs=100)
    assert short.resolved_milestones() == [77, 88]
    assert [short.learning_rate(e) for e in (0, 76, 77, 87, 88, 99)] == pytest.approx(
        [0.1, 0.1, 0.01, 0.01, 0.001, 0.001], rel=1e-12)
    given = TrainConfig(epochs=10, milestones=[3, 5], lr=0.5)
    assert [given.learning_rate(e) for e in range(10)] == pytest.approx([0.5] * 3 + [0.05] * 2 + [0.005] * 5,
                                                                        rel=1e-12)


def test_defaults_are_the_papers_recipe():
    # "SGD with a batch size of 128, momentum of 0.9 and weight decay of 0.0001 ... 256 epochs ... initial
    # learning rate of 0.1 ... All the images in a mini-batch use the same crop"; 30 stochastic passes.
    cfg = TrainConfig()
    assert (cfg.batch_size, cfg.epochs, cfg.lr, cfg.momentum, cfg.weight_decay) == (128, 256, 0.1, 0.9, 1e-4)
    assert cfg.resolved_milestones() == [196, 224]
    assert cfg.crop == "batch"
    assert cfg.eval_samples == 30


# -- the presets against the paper's tables ------------------------------------------------------------

@dataclass(frozen=True)
class Row:
    """One model row of the paper's Tables 1-5, written from the paper's text.

    ``x``/``f``: the keep probability of X and of F(X) in the joins' expectation, each a constant or
    ("linear", a, b); ``granularity`` of the masks (None for a plain residual join); ``errors``: the
    error figures of the row (%). ``cited``: a figure quoted from another paper, not trained by this one.
    """

    table: int
    label: str
    dataset: str
    model: str
    depth: int
    width: int
    method: str
    x: object
    f: object
    granularity: Optional[str]
    errors: Tuple[Tuple[str, float], ...]
    cited: bool = False


L10 = ("linear", 1.0, 0.5)  # Linear(1, 0.5), "All stochastic methods were trained using [it]" (Table 1)
L08 = ("linear", 1.0, 0.8)
C10, C100 = "cifar10", "cifar100"
V1, V2 = "resnet_v1_ours", "resnet_v2_ours"


def _err(e):
    return (("error", e),)


def _det_stoch(d, s):
    return (("deterministic_error", d), ("stochastic_error", s))


def _resnet(table, label, dataset, model, depth, width, errors, cited=False):
    return Row(table, label, dataset, model, depth, width, "resnet", 1.0, 1.0, None, errors, cited)


def _swapout(table, label, dataset, model, depth, width, errors, t1=L10, t2=L10):
    return Row(table, label, dataset, model, depth, width, "swapout", t1, t2, "unit", errors)


def _complement(schedule):
    """1 - theta of a schedule (SkipForward reports F(X) when it does not report X)."""
    if isinstance(schedule, tuple):
        return ("linear", 1 - schedule[1], 1 - schedule[2])
    return 1 - schedule


PAPER = [
    # Table 1: CIFAR-10, 20 layers
    _resnet(1, "ResNet v1 [4] W x 1", C10, "resnet_v1", 20, 1, _err(8.75), cited=True),
    _resnet(1, "ResNet v1 Ours W x 1", C10, V1, 20, 1, _err(8.54)),
    _swapout(1, "Swapout v1 W x 1", C10, V1, 20, 1, _err(8.27)),
    _resnet(1, "ResNet v2 Ours W x 1", C10, V2, 20, 1, _err(8.27)),
    _swapout(1, "Swapout v2 W x 1", C10, V2, 20, 1, _err(7.97)),
    _swapout(1, "Swapout v1 W x 2", C10, V1, 20, 2, _err(6.58)),
    _resnet(1, "ResNet v2 Ours W x 2", C10, V2, 20, 2, _err(6.54)),
    # layer dropout: Y = X + Theta F(X), "a single Bernoulli random variable shared across all units"
    Row(1, "Stochastic Depth v2 Ours W x 2", C10, V2, 20, 2, "stochastic_depth", 1.0, L10, "batch", _err(5.99)),
    # "standard dropout (replace equation 3 with equation 1)": Y = Theta F(X)
    Row(1, "Dropout v2 W x 2", C10, V2, 20, 2, "dropout", 0.0, L10, "unit", _err(5.87)),
    # equation 4 as printed, Y = Theta X + (1 - Theta) F(X), with Theta ~ Linear(1, 0.5)
    Row(1, "SkipForward v2 W x 2", C10, V2, 20, 2, "skipforward", L10, _complement(L10), "unit", _err(6.11)),
    _swapout(1, "Swapout v2 W x 2", C10, V2, 20, 2, _err(5.68)),
    # Table 2: CIFAR-10, 20 layers, W x 2, v2, deterministic and stochastic (30 samples) inference
    _swapout(2, "theta1 = theta2 = 0.5", C10, V2, 20, 2, _det_stoch(10.36, 6.69), 0.5, 0.5),
    _swapout(2, "theta1 = 0.2, theta2 = 0.8", C10, V2, 20, 2, _det_stoch(10.14, 7.63), 0.2, 0.8),
    _swapout(2, "theta1 = 0.8, theta2 = 0.2", C10, V2, 20, 2, _det_stoch(7.58, 6.56), 0.8, 0.2),
    _swapout(2, "theta1 = theta2 = Linear(0.5, 1)", C10, V2, 20, 2, _det_stoch(7.34, 6.52),
             ("linear", 0.5, 1.0), ("linear", 0.5, 1.0)),
    _swapout(2, "theta1 = theta2 = Linear(1, 0.5)", C10, V2, 20, 2, _det_stoch(6.43, 5.68)),
    # Table 3: CIFAR-10, v2; a ResNet v2 column and a Swapout (deterministic, stochastic) column per row
    _resnet(3, "(20) W x 1, ResNet v2", C10, V2, 20, 1, _err(8.27)),
    _resnet(3, "(20) W x 2, ResNet v2", C10, V2, 20, 2, _err(6.54)),
    _resnet(3, "(20) W x 4, ResNet v2", C10, V2, 20, 4, _err(5.62)),
    _resnet(3, "(32) W x 4, ResNet v2", C10, V2, 32, 4, _err(5.23)),
    _swapout(3, "Swapout v2 (20) W x 1", C10, V2, 20, 1, _det_stoch(8.58, 7.92)),
    _swapout(3, "Swapout v2 (20) W x 2", C10, V2, 20, 2, _det_stoch(6.40, 5.68)),
    _swapout(3, "Swapout v2 (20) W x 4", C10, V2, 20, 4, _det_stoch(5.43, 5.09)),
    _swapout(3, "Swapout v2 (32) W x 4", C10, V2, 32, 4, _det_stoch(4.97, 4.76)),
    # Table 4: CIFAR-10 (rows without a model of this library, DropConnect ... Highway, are left out)
    _resnet(4, "ResNet v1(110) [4]", C10, "resnet_v1", 110, 1, _err(6.41), cited=True),
    Row(4, "Stochastic Depth v1(1202) [6]", C10, "resnet_v1", 1202, 1, "stochastic_depth", 1.0, L10, "batch",
        _err(4.91), cited=True),
    _swapout(4, "SwapOut v1(20) W x 2", C10, V1, 20, 2, _err(6.58)),
    _resnet(4, "ResNet v2 (1001) [5]", C10, "preact_resnet", 1001, 1, _err(4.92), cited=True),
    _swapout(4, "SwapOut v2(32) W x 4", C10, V2, 32, 4, _err(4.76)),
    # Table 5: CIFAR-100
    _resnet(5, "ResNet v1 (110) [4]", C100, "resnet_v1", 110, 1, _err(27.22), cited=True),
    Row(5, "Stochastic Depth v1 (110) [6]", C100, "resnet_v1", 110, 1, "stochastic_depth", 1.0, L10, "batch",
        _err(24.58), cited=True),
    _resnet(5, "ResNet v2 (164) [5]", C100, "preact_resnet", 164, 1, _err(24.33), cited=True),
    _resnet(5, "ResNet v2 (1001) [5]", C100, "preact_resnet", 1001, 1, _err(22.71), cited=True),
    _resnet(5, "ResNet v2 Ours (20) W x 2", C100, V2, 20, 2, _err(28.08)),
    _swapout(5, "SwapOut v2 (20)(Linear(1,0.5)) W x 2", C100, V2, 20, 2, _err(25.86)),
    _swapout(5, "SwapOut v2 (56)(Linear(1,0.5)) W x 2", C100, V2, 56, 2, _err(24.86)),
    _swapout(5, "SwapOut v2 (56)(Linear(1,0.8)) W x 2", C100, V2, 56, 2, _err(23.46), L08, L08),
    _swapout(5, "SwapOut v2 (32)(Linear(1,0.8)) W x 4", C100, V2, 32, 4, _err(22.72), L08, L08),
]


def _per_block(schedule, blocks):
    """A schedule's value at each block: Linear(a, b) runs from a at the first block to b at the last."""
    if isinstance(schedule, tuple):
        _, a, b = schedule
        return [a + (b - a) * i / (blocks - 1) for i in range(blocks)]
    return [schedule] * blocks


def _table_presets():
    presets = {name: p for name, p in config.list_presets().items() if name.startswith("table")}
    assert presets, "no presets of the paper's tables"
    return presets


def _joins_expectation(model):
    """Each block's keep probability of X and of F(X), measured from its join's deterministic output."""
    one, zero = torch.ones(1, dtype=torch.float64), torch.zeros(1, dtype=torch.float64)
    out = []
    for block in model.blocks:
        join = block.join.eval()
        out.append((join(one, zero).item(), join(zero, one).item(), getattr(join, "granularity", None)))
    return out


def _describe(preset):
    """What a preset trains: its config, and each block's join in the model as built for training."""
    cfg = TrainConfig.from_dict(preset["config"])
    with torch.device("meta"):
        model = build_model(cfg)
    return cfg, _joins_expectation(model)


def _matches(row, cfg, joins):
    if (cfg.dataset, cfg.model, cfg.depth, cfg.width, cfg.method) != (row.dataset, row.model, row.depth,
                                                                       row.width, row.method):
        return False
    blocks = len(joins)
    if blocks != (row.depth - 2) // (3 if row.model == "preact_resnet" else 2):  # 2 (3) layers a block
        return False
    want = list(zip(_per_block(row.x, blocks), _per_block(row.f, blocks)))
    got_x, got_f = [j[0] for j in joins], [j[1] for j in joins]
    return (all(math.isclose(g, w[0], abs_tol=1e-9) for g, w in zip(got_x, want))
            and all(math.isclose(g, w[1], abs_tol=1e-9) for g, w in zip(got_f, want))
            and (row.granularity is None or all(j[2] == row.granularity for j in joins)))


@pytest.fixture(scope="module")
def described():
    return {name: (p, *_describe(p)) for name, p in _table_presets().items()}


def test_every_table_preset_is_a_row_of_that_table_with_its_figures(described):
    for name, (preset, cfg, joins) in described.items():
        table = int(name[len("table"):name.index("/")])
        rows = [r for r in PAPER if r.table == table and _matches(r, cfg, joins)]
        assert len(rows) == 1, f"{name} ({preset['row']!r}) matches {len(rows)} rows of Table {table}"
        (row,) = rows
        errors = {k: v for k, v in preset["paper"].items() if "error" in k}
        assert errors == dict(row.errors), f"{name}: the paper reports {dict(row.errors)} for {row.label!r}"


def test_every_trained_row_of_the_tables_has_a_preset(described):
    missing = []
    for row in PAPER:
        if row.cited:
            continue
        if not any(name.startswith(f"table{row.table}/") and _matches(row, cfg, joins)
                   for name, (_, cfg, joins) in described.items()):
            missing.append(f"Table {row.table}: {row.label}")
    assert not missing, f"rows the paper trained without a preset: {missing}"


def test_table_presets_train_with_the_papers_recipe(described):
    for name, (_, cfg, _) in described.items():
        recipe = (cfg.epochs, cfg.batch_size, cfg.lr, cfg.momentum, cfg.weight_decay, cfg.resolved_milestones(),
                  cfg.crop, cfg.eval_samples, cfg.val_split, cfg.eval_limit, cfg.max_steps)
        assert recipe == (256, 128, 0.1, 0.9, 1e-4, [196, 224], "batch", 30, 0, None, None), name
