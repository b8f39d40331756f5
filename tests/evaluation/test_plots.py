"""The figures: nothing drawn outside the canvas, whatever the title, and a legend entry for every mark."""

import pytest
import torch
from matplotlib.figure import Figure

from swapout.evaluation.plots import plot_curve, plot_reliability
from swapout.evaluation.shift_report import plot_shift
from swapout.evaluation.uncertainty import reliability_bins

LONG_TITLE = ("table3/swapout-v2-32-w4: error vs passes, 9,980 exact test images (20 approximate ones excluded), "
              "first 2,000 only, 30 repetitions")


@pytest.fixture
def saved(monkeypatch):
    """The figures the plotting functions save, drawn as they are written."""
    figures, save = [], Figure.savefig

    def keep(fig, *args, **kwargs):
        figures.append(fig)
        return save(fig, *args, **kwargs)

    monkeypatch.setattr(Figure, "savefig", keep)
    return figures


def _outside(fig):
    """How far (in pixels) the drawn artists reach beyond each edge of the canvas; 0 where they stay inside."""
    box = fig.get_tightbbox().transformed(fig.dpi_scale_trans)
    return [max(0.0, -box.x0), max(0.0, -box.y0), max(0.0, box.x1 - fig.bbox.width),
            max(0.0, box.y1 - fig.bbox.height)]


def _panels():
    g = torch.Generator().manual_seed(0)
    over = (3 * torch.randn(500, 10, generator=g)).softmax(-1)  # confident, mostly wrong: confidence > accuracy
    under = (0.3 * torch.randn(500, 10, generator=g)).softmax(-1)  # timid and right: accuracy > confidence
    return [{"label": "deterministic", **reliability_bins(over, torch.randint(0, 10, (500,), generator=g), 15)},
            {"label": "stochastic + temperature", **reliability_bins(under, under.argmax(1), 15)}]


def test_figure_2_keeps_a_long_title_inside_the_picture(tmp_path, saved):
    curve = {"samples": list(range(1, 31)), "mean_error": [20 - i / 6 for i in range(30)],
             "standard_error": [0.3] * 30, "repeats": 30, "images": 2000}
    plot_curve(curve, tmp_path / "f.png", LONG_TITLE.upper())  # capitals: the widest text of that length
    assert _outside(saved[-1]) == [0, 0, 0, 0]


def test_reliability_diagram_fits_and_its_legend_names_every_mark(tmp_path, saved):
    plot_reliability(_panels(), tmp_path / "r.png", LONG_TITLE)
    fig = saved[-1]
    assert _outside(fig) == [0, 0, 0, 0]  # the x-axis labels and the title included
    labels = [t.get_text() for ax in fig.axes if ax.get_legend() for t in ax.get_legend().get_texts()]
    # the bars, both kinds of gap (the one drawn over the bars looks dark) and the diagonal
    assert labels == ["accuracy", "confidence above accuracy", "accuracy above confidence", "perfect calibration"]


def _shift_result(base):
    """A shift result over severities clean, 1 and 5 (2-4 not evaluated), deterministic and deterministic + T
    of equal error as always, every mean with an interval."""
    summary = {}
    for s in ("0", "1", "5"):
        summary[s] = {}
        for j, mode in enumerate(("deterministic", "deterministic+T", "stochastic", "stochastic+T")):
            ece, error = base + 4 * int(s) - j, base + 8 * int(s) - (j // 2)
            summary[s][mode] = {"ece": ece, "error": error, "ece_interval": [ece - 1, ece + 1.5],
                                "error_interval": [error - 2, error + 2]}
    return {"summary": summary}


def test_shift_figure_keeps_every_line_visible_and_draws_only_what_was_measured(tmp_path, saved):
    results = {"runs/a (seed 1)": _shift_result(10), "runs/b (seed 2)": _shift_result(12)}
    plot_shift(results, tmp_path / "s.png", "corrupted CIFAR-10 (in the manner of CIFAR-10-C), 500 images per set, "
               "mean over 14 corruptions; swapout 10 passes")
    fig = saved[-1]
    assert _outside(fig) == [0, 0, 0, 0] and "\n" not in fig.get_suptitle()
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert legend[:2] == ["runs/a (seed 1): deterministic", "runs/a (seed 1): deterministic + temperature"]
    assert len(set(legend)) == len(legend) == 9  # 8 lines and the interval's mark
    for ax in fig.axes[:2]:
        assert list(ax.get_xticks()) == [0, 1, 5]  # ticks where there is data only
        lines = [line for line in ax.get_lines() if len(line.get_xdata())]
        assert len(lines) == 8
        xs = [torch.tensor(line.get_xdata(), dtype=torch.float64) for line in lines]
        for x in xs:  # a point, a point, a break, a point: nothing joins severities 1 and 5
            assert x[2].isnan() and not x[[0, 1, 3]].isnan().any()
        marks = torch.stack([x[[0, 1, 3]] for x in xs])
        assert len(marks.flatten().unique()) == marks.numel()  # no two lines' marks at the same place
        assert (marks - torch.tensor([0.0, 1.0, 5.0])).abs().max() < 0.5
        assert len(ax.collections) == 8  # one set of interval bars per line
