"""What every test run shares: torchvision and timm from ``.interop/``, and the Python blocks of the docs and
the README run as tests (Sybil), so that an example that no longer works fails the suite.

A block that cannot run here is preceded by ``<!-- skip: next "why" -->`` (``tests/docs/test_docs.py`` checks
that every skip gives its reason), or ``<!-- skip: next if(not HAVE_TIMM, reason="...") -->`` when it runs
wherever the package it needs is installed. The blocks of one page run in order, in one namespace, in a
temporary folder of their own, so that a page reads as one session.
"""

import functools
import importlib.util
import os
import sys
import tempfile
import types
from pathlib import Path

import pytest
import torch
from sybil import Sybil
from sybil.parsers.markdown import PythonCodeBlockParser, SkipParser

ROOT = Path(__file__).resolve().parent

# torchvision and timm for the conversion tests live in .interop/ (see .ci/run), off the library's path:
# PyPI's torchvision beside a CPU-only torch fails while it registers its compiled operators' meta kernels
# ("operator torchvision::nms does not exist"), and torchmetrics imports torchvision when it can find it.
# The pure-Python models need none of those operators, so the registrations are left out here.
_INTEROP = ROOT / ".interop"
if _INTEROP.is_dir() and str(_INTEROP) not in sys.path:
    sys.path.append(str(_INTEROP))
if torch.version.cuda is None and "torchvision" not in sys.modules and importlib.util.find_spec("torchvision"):
    sys.modules.setdefault("torchvision._meta_registrations", types.ModuleType("torchvision._meta_registrations"))


@functools.cache
def _have_data() -> bool:
    """Whether CIFAR-10's compact copy is where swapout looks: the tests never download it."""
    from swapout.data import default_data_dir
    return (default_data_dir() / "cifar10-train.npz").exists()


def pytest_configure(config) -> None:
    config.addinivalue_line("markers", "needs_data: skipped where CIFAR-10 is not available (the tests never "
                                       "download it)")


def pytest_runtest_setup(item) -> None:
    if item.get_closest_marker("needs_data") and not _have_data():
        pytest.skip("CIFAR-10 (../shared/data) is not available here")


def _setup(namespace: dict) -> None:
    folder = tempfile.TemporaryDirectory(prefix="swapout-docs-")
    namespace.update(_folder=folder, _cwd=os.getcwd(), HAVE_TIMM=importlib.util.find_spec("timm") is not None,
                     HAVE_TORCHVISION=importlib.util.find_spec("torchvision") is not None,
                     HAVE_DATA=_have_data(), HAVE_CUDA=torch.cuda.is_available())
    os.chdir(folder.name)
    torch.manual_seed(0)


def _teardown(namespace: dict) -> None:
    os.chdir(namespace["_cwd"])
    namespace["_folder"].cleanup()


pytest_collect_file = Sybil(parsers=[PythonCodeBlockParser(), SkipParser()], patterns=["README.md", "docs/*.md"],
                            setup=_setup, teardown=_teardown).pytest()
