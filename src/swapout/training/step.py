"""One training step: forward, loss, backward and the SGD update, eager or compiled, fp32 or bf16.

On a GPU a step of the paper's networks is bound by kernel launches and host work, not arithmetic:
a 20-layer W x 1 step is about 16 GFLOP. The fast path therefore (a) compiles the forward and
backward passes with ``torch.compile`` (CUDA graphs on a GPU: ``mode="reduce-overhead"``) and the
optimizer update as a second compiled function, (b) runs the convolutions in bf16 under autocast with
channels-last tensors, and (c) never reads from the device inside the step. The running figures of an
epoch (loss sum, correct predictions, images) and the index of the first step whose loss was not
finite stay on the device; `TrainStep.read` fetches them in one transfer, which the training
loop does every few steps and before every checkpoint.

The same step trains G packed runs (`swapout.training.packing`): the network's logits are ``(N, G*K)``,
the labels ``(N, G)``, the loss is the sum of the runs' losses (so each run's gradients are its own),
and the figures and the non-finite check are kept per run.
"""

from __future__ import annotations

import inspect
import logging
from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..checks import PRECISIONS
from ..kernels import fused
from .speed import Compilation, NotCompiled, prepare_model, resolve_speed, set_cuda_backends

__all__ = ["PRECISIONS", "TrainStep", "StepFigures", "Compilation", "NotCompiled", "resolve_speed", "prepare_model",
           "set_cuda_backends"]


class _SkipProfilerNote(logging.Filter):
    """Optimizer.step carries a profiler annotation that dynamo skips with a warning reading like a fault."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "Profiler record function" not in str(record.msg)


logging.getLogger("torch._dynamo.variables.ctx_manager").addFilter(_SkipProfilerNote())

# Dynamo keeps its compiled code per code object, and every TrainStep compiles the same two
# (_forward_loss, and the optimizer's step), so without care all TrainSteps of a process share one
# cache and one recompile limit (8), dead ones included: the 9th network's forward and the 5th
# optimizer's update would run eagerly. torch.compile's isolate_recompiles (newer torch) gives each
# compiled function a cache of its own, frames resumed after a graph break included; older torch
# gets a reset of Dynamo's caches when a compiled TrainStep is made.
_ISOLATE = "isolate_recompiles" in inspect.signature(torch.compile).parameters


def _compile(fn, **options):
    """``torch.compile(fn, **options)``, with a Dynamo cache of its own where torch can give one."""
    return torch.compile(fn, isolate_recompiles=True, **options) if _ISOLATE else torch.compile(fn, **options)


def _dynamo_counts() -> Tuple[int, int, int]:
    """Graphs Dynamo compiled, frames it left to run eagerly at a recompile limit, graphs run without CUDA graphs."""
    from torch._dynamo.utils import counters
    # Dynamo counts what it could not compile by message; a limit's names it ("recompile limit", or
    # "cache_size_limit" in older torch). Frames it skips by design (a generator, say) are not failures.
    limits = sum(n for what, n in counters["unimplemented"].items() if "limit" in what.lower())
    return counters["stats"]["unique_graphs"], limits, counters["inductor"]["cudagraph_skips"]


@dataclass(frozen=True)
class StepFigures:
    """What `TrainStep.read` returns: this epoch's sums, and the first non-finite step if any."""

    loss_sum: float        # sum over images of the cross-entropy loss
    right: int             # images classified correctly (in training mode, with masks sampled)
    images: int
    first_bad: int         # index (since the TrainStep was made) of the first non-finite loss; -1 if none

    @property
    def loss(self) -> float:
        return self.loss_sum / max(self.images, 1)

    @property
    def error(self) -> float:
        """Training error in percent."""
        return 100.0 * (1 - self.right / max(self.images, 1))


class TrainStep:
    """``step(x, y)`` performs one optimisation step of ``net`` on a batch and updates device-side sums.

    Args:
        net: the network (a ``DistributedDataParallel`` wrapper in data-parallel training).
        optimizer: the optimizer of its parameters.
        device: where the batches and the network are.
        precision: ``"fp32"``, or ``"bf16"`` for bf16 autocast of the forward pass (the loss, the
            weights and the optimizer state stay fp32). On CUDA, ``"fp32"`` is IEEE float32: TF32 is
            turned off (`set_cuda_backends`, which also turns cuDNN's autotuner on).
        compile: compile the forward and backward passes and the optimizer update, each with a Dynamo
            cache of its own; `check_compiled` tells whether the calls so far ran compiled code.
        sums: each run's (loss sum, right, images) of the epoch so far, when resuming mid-epoch.
        runs: G, the number of packed runs in ``net`` (1: a plain network, labels ``(N,)``).
        channels_last: give ``net`` its 4-D input channels-last, the layout `prepare_model` gives it.
    """

    def __init__(self, net: nn.Module, optimizer: torch.optim.Optimizer, device: torch.device,
                 precision: str = "fp32", compile: bool = False, sums: Optional[Sequence[Sequence[float]]] = None,
                 runs: int = 1, channels_last: bool = True):
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be 'fp32' or 'bf16', got {precision!r}")
        self.net, self.optimizer, self.device = net, optimizer, torch.device(device)
        self.bf16 = precision == "bf16"
        if self.device.type == "cuda":
            set_cuda_backends(precision)
        self.channels_last = channels_last  # the input's layout; the model's own is prepare_model()'s
        self.cudagraphs = compile and self.device.type == "cuda"
        self.runs = runs
        self.sums = torch.tensor([list(s) for s in sums] if sums else [[0.0, 0, 0]] * runs, dtype=torch.float64,
                                 device=self.device)
        self.count = torch.zeros((), dtype=torch.int64, device=self.device)
        self.first_bad = torch.full((runs,), -1, dtype=torch.int64, device=self.device)
        self._forward, self._update = self._forward_loss, optimizer.step
        self.compiled = compile
        self.compilation = Compilation()
        if compile:
            if not _ISOLATE:  # other compiled functions of this process recompile at their next call
                torch._dynamo.reset()
            if self.device.type == "cpu":
                # the fused CPU kernel is built or loaded at its first use, under a lock that Dynamo
                # cannot trace: a first use inside the compiled forward would break it into many graphs
                fused.available(torch.empty(0))
            # CUDA graphs replay the whole forward and backward with one launch each. The update is
            # compiled without them (Inductor still fuses it into a few kernels): a second graphed
            # function would start a new graph generation and free the backward's outputs, the
            # gradients it is about to read.
            self._forward = _compile(self._forward_loss, mode="reduce-overhead" if self.cudagraphs else None)
            self._update = _compile(optimizer.step)

    def _forward_loss(self, x: Tensor, y: Tensor) -> Tuple[Tensor, Tensor]:
        """The loss, and each run's (loss, loss sum, correct, images) of the batch as one (G, 4) tensor."""
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16):
            logits = self.net(x)
        n = len(y)
        logits = logits.float().view(n, self.runs, -1)
        y = y.view(n, self.runs)
        # one plain cross-entropy per run, so that a packed run's loss rounds exactly as its solo run's
        # would (a reduction over a (N, K, G) layout sums in another order); compiled, they fuse
        losses = torch.stack([F.cross_entropy(logits[:, g], y[:, g]) for g in range(self.runs)])
        images = torch.full_like(losses.detach(), n)  # a fill, not a copy from the host
        right = (logits.argmax(2) == y).sum(0).float()
        figures = torch.stack([losses.detach(), losses.detach() * n, right, images], 1)
        return losses.sum(), figures

    def __call__(self, x: Tensor, y: Tensor) -> None:
        if self.cudagraphs:
            torch.compiler.cudagraph_mark_step_begin()  # the previous step's graph outputs are done with
        if self.channels_last and x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        self.optimizer.zero_grad(set_to_none=True)
        before = _dynamo_counts() if self.compiled else None
        loss, figures = self._forward(x, y)
        between = _dynamo_counts() if self.compiled else None
        # The graph's outputs are used at once, before another compiled call can reuse their memory.
        self.sums += figures[:, 1:]
        # Remember the first step whose loss was not finite without reading it back: the loop checks
        # at its next read, and no checkpoint is written from a later state.
        bad = ~torch.isfinite(figures[:, 0])
        self.first_bad.copy_(torch.where(bad & (self.first_bad < 0), self.count, self.first_bad))
        self.count += 1
        loss.backward()
        self._update()
        if before is not None and between is not None:  # compiled
            self._count(before, between, _dynamo_counts())

    def _count(self, before: Tuple[int, ...], between: Tuple[int, ...], after: Tuple[int, ...]) -> None:
        c = self.compilation
        c.forward_graphs += between[0] - before[0]
        c.update_graphs += after[0] - between[0]
        c.limit_hits += after[1] - before[1]
        c.cudagraph_skips += after[2] - before[2]

    def check_compiled(self) -> Compilation:
        """Raise `NotCompiled` unless the calls so far compiled the forward pass and the update, hit no
        recompile limit (nor, with CUDA graphs, ran a graph outside them); else return what was compiled.

        Benchmarks of the fast path call it after their warm-up, and after timing with the warm-up's
        figures unchanged, so that what they time is the compiled step.
        """
        if not self.compiled:
            raise NotCompiled("this TrainStep was made with compile=False")
        problems = self.compilation.problems(self.cudagraphs)
        if problems:
            raise NotCompiled("the step is not the compiled one: " + "; ".join(problems))
        return self.compilation

    def weights_finite(self) -> List[bool]:
        """Per run, whether all its weights are finite (a finite loss with infinite gradients can still
        ruin them). A packed tensor holds the runs' tensors one after another along dimension 0."""
        per_param = [p.detach().reshape(self.runs, -1).isfinite().all(1) for p in self.net.parameters()]
        return torch.stack(per_param).all(0).tolist()

    def read(self) -> List[StepFigures]:
        """Each run's figures of the epoch so far and its first non-finite step, in one read from the device."""
        values = torch.cat([self.sums, self.first_bad.view(-1, 1).double()], 1).tolist()
        return [StepFigures(v[0], int(v[1]), int(v[2]), int(v[3])) for v in values]

    def reset_sums(self) -> None:
        """Start a new epoch's sums."""
        self.sums.zero_()
