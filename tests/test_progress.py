"""The progress bar: the speed after a resume, and singular/plural wording."""

import io

from swapout.progress import Progress, plural


def test_a_resumed_bar_measures_speed_from_the_resume_only():
    # 9,000 of 10,000 images were done before the process started; 1,000 more took 2 seconds. The
    # speed is 500 images/s, not 5,000 (all 10,000 over 2 s), and nothing is left.
    stream = io.StringIO()  # not a terminal: a line per tenth of the way
    bar = Progress(10_000, "epoch 2/2", initial=9_000, stream=stream)
    bar.start -= 2.0
    bar.update(1_000, loss=0.5)
    line = stream.getvalue().strip().splitlines()[-1]
    assert "500img/s" in line.replace(" ", "") and "5.00kimg/s" not in line.replace(" ", ""), line
    assert "10.0k/10.0k" in line and "loss=0.5" in line


def test_plural():
    assert [plural(1, "epoch"), plural(2, "epoch"), plural(1, "pass"), plural(30, "pass"), plural(1_000, "step")] \
        == ["1 epoch", "2 epochs", "1 pass", "30 passes", "1,000 steps"]
