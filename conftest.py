"""What every test run shares: torchvision and timm from ``.interop/``, temporary files in memory, the cores
shared among the parallel workers, and the Python blocks of the docs and the README run as tests (Sybil), so
that an example that no longer works fails the suite.

A block that cannot run here is preceded by ``<!-- skip: next "why" -->`` (``tests/docs/test_docs.py`` checks
that every skip gives its reason), or ``<!-- skip: next if(not HAVE_TIMM, reason="...") -->`` when it runs
wherever the package it needs is installed. The blocks of one page run in order, in one namespace, in a
temporary folder of their own, so that a page reads as one session.
"""

import functools
import getpass
import importlib.util
import os
import shutil
import sys
import tempfile
import types
from pathlib import Path


def _temporary_files_in_memory(room: int = 1 << 30) -> None:
    """Put the tests' temporary files (``tmp_path``, ``tempfile``, and those of the processes they start) in
    ``/dev/shm`` where it has ``room`` bytes free, unless TMPDIR says where they go. The runs under test write
    their checkpoints and studies durably, with an fsync per file or transaction, which on a disk costs
    milliseconds each (the tests of faults and draws take 36 s on a disk and 26 s in memory); in memory it costs
    nothing, and what is tested (the order of writes, atomic replacement) is the same. PyTorch's compile cache
    stays where it was (it would otherwise follow TMPDIR, and fill memory that outlives the tests)."""
    memory = Path("/dev/shm")
    if "TMPDIR" in os.environ or not memory.is_dir() or not os.access(memory, os.W_OK | os.X_OK):
        return
    if shutil.disk_usage(memory).free >= room:
        try:
            user = getpass.getuser()
        except (KeyError, OSError):
            user = f"uid_{os.getuid()}"
        os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(Path(tempfile.gettempdir()) / f"torchinductor_{user}"))
        os.environ["TMPDIR"] = str(memory)
        tempfile.tempdir = None  # read TMPDIR again


def _share_the_cores() -> int:
    """Give each of pytest-xdist's workers (the suite runs in parallel: ``addopts`` in pyproject.toml) an equal
    share of the cores, and have idle OpenMP threads sleep rather than spin, in the workers and in the
    processes their tests start (a sweep gives its runs threads by the machine's cores). With more threads
    than cores, spinning threads take the time of those with work: a packed sweep's test took 4 times as
    long beside another worker's. Set before PyTorch loads, which reads them; returns the threads, 0 if
    not running in parallel."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if workers < 2:
        return 0
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    threads = max(1, cores // workers)
    os.environ.update(OMP_NUM_THREADS=str(threads), OMP_WAIT_POLICY="PASSIVE")
    return threads


_temporary_files_in_memory()
_THREADS = _share_the_cores()

import pytest  # noqa: E402
import torch  # noqa: E402
from sybil import Sybil  # noqa: E402
from sybil.parsers.markdown import PythonCodeBlockParser, SkipParser  # noqa: E402

ROOT = Path(__file__).resolve().parent
if _THREADS:
    torch.set_num_threads(_THREADS)

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
