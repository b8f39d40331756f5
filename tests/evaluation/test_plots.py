"""The figures: nothing drawn outside the canvas, whatever the title, and a legend entry for every mark."""

import pytest
import torch
from matplotlib.figure import Figure

from swapout.evaluation.plots import plot_curve, plot_reliability
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
