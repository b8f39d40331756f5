"""The training recipe of section 4, the presets against the paper's Tables 1-5, and the data constants."""

import functools
import math
from dataclasses import dataclass
from typing import Optional, Tuple

import numpy as np
import pytest
import torch

from swapout.runs import config
from swapout.data import files as data
from swapout.runs.config import TrainConfig
from swapout.runs.experiment import build_model
from swapout.data.pipeline import TrainLoader

HAVE_DATA = (data.default_data_dir() / "cifar10-train.npz").exists()
needs_data = pytest.mark.skipif(not HAVE_DATA, reason="CIFAR-10 (../shared/data) is not available here")


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


# -- per-channel normalisation constants ---------------------------------------------------------------

def test_mean_and_std_are_the_published_cifar_statistics():
    assert data.MEAN == {"cifar10": (0.4914, 0.4822, 0.4465), "cifar100": (0.5071, 0.4865, 0.4409)}
    assert data.STD == {"cifar10": (0.2470, 0.2435, 0.2616), "cifar100": (0.2673, 0.2564, 0.2762)}


@needs_data
def test_mean_and_std_are_those_of_the_training_images():
    dataset = "cifar10"
    split = data.load_split(dataset, "train", download=False, verify=False)
    assert len(split) == 50_000
    mean, std = [], []
    for c in range(3):  # exact moments of each channel from its histogram of uint8 values
        counts = np.bincount(split.images[..., c].ravel(), minlength=256).astype(np.float64)
        values = np.arange(256) / 255
        m = (counts * values).sum() / counts.sum()
        mean.append(m)
        std.append(math.sqrt((counts * (values - m) ** 2).sum() / counts.sum()))
    # the constants are the statistics rounded to 4 decimals
    assert np.abs(np.array(mean) - data.MEAN[dataset]).max() <= 0.5e-4 + 1e-7, mean
    assert np.abs(np.array(std) - data.STD[dataset]).max() <= 0.5e-4 + 1e-7, std


# -- augmentation: translations of up to 4 pixels, left-right flips ------------------------------------

@functools.lru_cache(maxsize=None)
def _augmented_views(crop, batches, batch_size):
    """Offsets (dy, dx) and flips of every augmented image, (batches, batch_size) each, read from the
    loader's output alone.

    Channel 0 is all 255, so the zero padding that a translation brings in shows where the image went;
    channel 1 is a left-to-right ramp, so its direction shows a flip; channel 2 a top-to-bottom one.
    """
    images = np.zeros((64, 32, 32, 3), np.uint8)
    images[..., 0] = 255
    images[..., 1] = np.arange(1, 33, dtype=np.uint8)[None, None, :] * 7
    images[..., 2] = np.arange(1, 33, dtype=np.uint8)[None, :, None] * 7
    loader = TrainLoader(images, np.zeros(64, np.int64), batch_size, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0), "cpu",
                         seed=5, crop=crop)
    xs, epoch = [], 0
    while len(xs) < batches:
        xs.extend(x for x, _ in loader.batches(epoch))
        epoch += 1
    x = torch.cat(xs[:batches])
    present = x[:, 0] > 0
    rows, cols = present.any(2), present.any(1)
    top, left = rows.int().argmax(1), cols.int().argmax(1)
    bottom, right = 31 - rows.flip(1).int().argmax(1), 31 - cols.flip(1).int().argmax(1)
    # a crop at offset (dy, dx) of the padded image, 0..8 each, puts the image at rows 4 - dy .. 35 - dy
    dy = torch.where(top > 0, 4 - top, 35 - bottom)
    dx = torch.where(left > 0, 4 - left, 35 - right)
    n = torch.arange(len(x))
    flipped = x[n, 1, top, left] > x[n, 1, top, right]
    # a translation moves the image without changing it: the crop is the padded (flipped) image at (dy, dx)
    column = torch.arange(32) + dx[:, None] - 4  # the image column under each output column
    row = torch.arange(32) + dy[:, None] - 4
    ramp = torch.where(flipped[:, None], 32 - column, column + 1) * 7
    ramp = torch.where((column >= 0) & (column < 32), ramp, 0)
    inside = (row >= 0) & (row < 32)
    assert torch.equal(present, inside[:, :, None] & (ramp > 0)[:, None, :])
    assert torch.allclose(x[:, 1], inside[:, :, None] * ramp[:, None, :] / 255)
    vertical = torch.where(inside, (row + 1) * 7, 0)  # never flipped upside down
    assert torch.allclose(x[:, 2], vertical[:, :, None] * (ramp > 0)[:, None, :] / 255)
    shape = (batches, batch_size)
    return (dy - 4).view(shape), (dx - 4).view(shape), flipped.view(shape)


@pytest.mark.parametrize("crop", ["batch", "image"])
def test_translations_cover_exactly_minus_4_to_4_pixels(crop, one_thread):
    # 81 offsets, equally likely: after 1,500 draws a given one is missing with probability
    # (80/81)^1500 < 1e-8, so all 81 show up; none may lie outside -4..4.
    dy, dx, _ = _augmented_views(crop, 1500, 2) if crop == "batch" else _augmented_views(crop, 375, 4)
    offsets = set(zip(dy.flatten().tolist(), dx.flatten().tolist()))
    assert offsets == {(a, b) for a in range(-4, 5) for b in range(-4, 5)}
    one_per_batch = (dy == dy[:, :1]).all(1) & (dx == dx[:, :1]).all(1)
    if crop == "batch":
        assert one_per_batch.all()  # "All the images in a mini-batch use the same crop"
    else:
        assert not one_per_batch.all()


def test_flips_are_per_image_and_half_of_them(one_thread):
    _, _, flipped = _augmented_views("batch", 1500, 2)
    # 3,000 images: the share of flips is within 5 standard errors (0.046) of one half
    assert abs(flipped.double().mean().item() - 0.5) < 5 * math.sqrt(0.25 / flipped.numel())
    assert (flipped[:, 0] != flipped[:, 1]).any()  # drawn per image, not per batch
