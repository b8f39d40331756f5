"""The ``Examples:`` of the API reference's docstrings run, as doctests, so that an example on the site cannot
go stale; and the main entry points have one."""

import doctest
import importlib
import inspect

import pytest
from test_api_reference import entries

# the entry points a reader starts from: each must show a run example
MUST_HAVE_AN_EXAMPLE = ["swapout.Swapout", "swapout.swapout", "swapout.conversion.convert.convert",
                        "swapout.find_joins", "swapout.predict", "swapout.set_inference", "swapout.using_inference",
                        "swapout.models.create_model", "swapout.parse_schedule", "swapout.runs.config.TrainConfig",
                        "swapout.runs.config.load_preset", "swapout.training.train.train"]
# examples that train on CIFAR-10: skipped where it is absent, as the docs' blocks are (the tests never download)
NEEDS_DATA = {"swapout.training.train.train"}


def _object(name):
    module, _, attr = name.rpartition(".")
    return getattr(importlib.import_module(module), attr)


def _examples():
    """{dotted name: doctest} of every API entry whose docstring (or a method's) holds ``>>>`` examples."""
    finder, found = doctest.DocTestFinder(exclude_empty=True), {}
    for name in entries():
        obj = _object(name)
        if inspect.ismodule(obj) or not (inspect.isclass(obj) or callable(obj)):
            continue
        for test in finder.find(obj, name, globs={}):
            if test.examples:
                found[test.name] = test
    return found


EXAMPLES = _examples()


def test_the_entry_points_have_examples():
    missing = [name for name in MUST_HAVE_AN_EXAMPLE if name not in EXAMPLES]
    assert not missing, f"entry points without a >>> example in their docstring: {missing}"


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_the_example_runs(name, request):
    if name in NEEDS_DATA:
        request.applymarker(pytest.mark.needs_data)
        from swapout.data import default_data_dir
        if not (default_data_dir() / "cifar10-train.npz").exists():
            pytest.skip("CIFAR-10 is not available here")
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    failures = []
    runner.run(EXAMPLES[name], out=failures.append)
    assert runner.failures == 0, "".join(failures)
