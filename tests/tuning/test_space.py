"""The search space: its file, its checks, what a trial draws from it, and the grid."""

import json

import optuna
import pytest

from swapout.runs.config import TrainConfig, load_preset
from swapout.tuning.space import DEFAULT_SPACE, check_space, grid, read_space, suggest

BASE = load_preset("short/cpu-20-w1-swapout")


@pytest.mark.parametrize("space, message", [
    ({}, "non-empty JSON object"),
    ([], "non-empty JSON object"),
    ({"theta3": 1}, "unknown key theta3"),
    ({"theta1": {"low": 0.6, "high": 0.5}}, "0 <= low <= high <= 1"),
    ({"theta1": {"low": 0.5, "high": 1.2}}, "0 <= low <= high <= 1"),
    ({"theta1": {"low": 0.5}}, "expected"),
    ({"theta1": {"low": 0.5, "high": 1, "schedules": ["cosine"]}}, "schedules must be"),
    ({"theta1": {"low": 0.5, "high": 1, "step": 0.3}}, "whole number of steps"),
    ({"theta1": {"low": "a", "high": 1}}, "low must be a number"),
    ({"theta1": "linear(1,2)"}, "theta1"),
    ({"theta1": 1.0, "theta2": 0.5}, "searches nothing"),
    ({"granularity": ["unit", "pixel"]}, "granularity"),
    ({"method": ["resnet", "swapout"]}, "method"),
])
def test_bad_spaces_are_refused_saying_what_is_wrong(space, message):
    with pytest.raises(ValueError, match=message):
        check_space(space)


@pytest.mark.parametrize("text, message", [("", "the file is empty"), ("{theta1: 1", "--space .*: Expecting"),
                                           ("[]", "non-empty JSON object")])
def test_space_files_that_are_empty_or_malformed(tmp_path, text, message):
    path = tmp_path / "space.json"
    path.write_text(text)
    with pytest.raises(ValueError, match=message):
        read_space(str(path))
    with pytest.raises(ValueError, match="cannot be read"):
        read_space(str(tmp_path / "missing.json"))


def test_a_trial_draws_schedules_that_the_config_accepts():
    space = check_space({**DEFAULT_SPACE, "granularity": ["unit", "channel"]})
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=3))
    kinds = set()
    for _ in range(12):
        trial = study.ask()
        fields = suggest(trial, space, BASE)
        cfg = TrainConfig.from_dict({**BASE, **fields})
        cfg.join()  # parses and range-checks the schedules
        assert set(fields) == {"granularity", "theta1", "theta2"}
        for name in ("theta1", "theta2"):
            kind = trial.params[f"{name}_schedule"]
            kinds.add(kind)
            if kind == "linear":
                assert fields[name] == f"linear({trial.params[name + '_start']:g},{trial.params[name + '_end']:g})"
            else:
                assert fields[name] == f"{trial.params[name + '_value']:g}"
                assert 0.5 <= float(fields[name]) <= 1.0
        study.tell(trial, 0.0)
    assert kinds == {"linear", "constant"}


def test_fixed_thetas_and_a_method_that_reads_one_theta():
    space = check_space({"theta1": "0.9", "theta2": {"schedules": ["constant"], "low": 0.5, "high": 0.7, "step": 0.1},
                         "method": ["stochastic_depth"]})
    trial = optuna.trial.FixedTrial({"method": "stochastic_depth", "theta2_value": 0.6})
    # theta1 is not read by stochastic depth: cleared, so that a preset's own theta1 cannot make the config invalid
    assert suggest(trial, space, BASE) == {"method": "stochastic_depth", "skipforward_on": "x", "theta1": None,
                                           "theta2": "0.6"}


def test_the_grid_is_every_step_and_needs_fixed_parameters():
    space = check_space({"theta2": {"schedules": ["linear"], "low": 0.5, "high": 1.0, "step": 0.25}})
    assert grid(space, BASE) == {"theta2_start": [0.5, 0.75, 1.0], "theta2_end": [0.5, 0.75, 1.0]}
    with pytest.raises(ValueError, match="one schedule"):
        grid(check_space(DEFAULT_SPACE), BASE)


def test_the_default_space_file_round_trips(tmp_path):
    path = tmp_path / "space.json"
    path.write_text(json.dumps(DEFAULT_SPACE))
    assert read_space(str(path)) == read_space(None) == check_space(DEFAULT_SPACE)
