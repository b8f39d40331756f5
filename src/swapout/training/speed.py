"""How fast a training step runs: the memory layout, the precision and compilation resolved for a device, the
CUDA backends' settings, and what a compiled step reports of its compilation (`swapout.training.step`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional, Tuple

import torch
from torch import nn

__all__ = ["prepare_model", "resolve_speed", "set_cuda_backends", "NotCompiled", "Compilation"]


def prepare_model(model: nn.Module) -> nn.Module:
    """Channels-last weights, the convolutions' fast layout on GPUs and CPUs alike; call before wrapping in DDP.

    On 2 CPU cores the 20-layer network's training step is 1.1 to 1.2 times faster so
    (``benchmarks/bench_swapout.py --only layouts``); the fused swapout kernel keeps the layout.
    """
    # nn.Module.to takes memory_format (it passes it on to every parameter), though its overloads omit it
    return model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]


def resolve_speed(precision: str, compile: Optional[bool], device: torch.device) -> Tuple[str, bool]:
    """The precision and whether to compile, with ``precision="auto"`` and ``compile=None`` resolved for ``device``.

    Automatic is the fast path on CUDA (bf16, compiled) and the plain one on the CPU (fp32, eager),
    where compilation takes longer than a short run saves and bf16 convolutions are slower. The values
    come from a checked config; `TrainStep` checks the precision it is given.
    """
    cuda = device.type == "cuda"
    precision = ("bf16" if cuda else "fp32") if precision == "auto" else precision
    return precision, (cuda if compile is None else compile)


def set_cuda_backends(precision: str) -> None:
    """The CUDA settings of a training step in ``precision``: cuDNN's autotuner on, and no TF32 for ``"fp32"``.

    These are process-wide settings of torch (``torch.backends``); `TrainStep` applies them on CUDA.

    - ``cudnn.benchmark``: every training batch has the same shape, so timing cuDNN's convolution
      algorithms once per shape and keeping the fastest pays. (Not yet measured against the default.)
    - TF32: by default torch runs float32 convolutions on Ampere and later GPUs in TF32, with a
      10-bit mantissa. ``"fp32"`` means IEEE float32, so TF32 is turned off for convolutions and
      matrix products; it is left as torch has it under ``"bf16"``, whose convolutions run in bf16.
    """
    torch.backends.cudnn.benchmark = True
    if precision == "fp32":
        # the settings that torch's own convolution lowering reads, old and new torch alike
        torch.backends.cudnn.allow_tf32 = False
        torch.backends.cuda.matmul.allow_tf32 = False


class NotCompiled(RuntimeError):
    """A compiled TrainStep ran (part of) its step eagerly: what a benchmark of the fast path must not time."""


@dataclass
class Compilation:
    """What Dynamo did during a compiled `TrainStep`'s calls so far."""

    forward_graphs: int = 0    # graphs compiled for the forward and backward passes
    update_graphs: int = 0     # graphs compiled for the optimizer update
    limit_hits: int = 0        # frames that hit a recompile limit, which then run eagerly
    cudagraph_skips: int = 0   # graphs that run without CUDA graphs

    def problems(self, cudagraphs: bool) -> List[str]:
        """What keeps the step from being the compiled one; empty when it is."""
        out = [f"no graph was compiled for the {what}" for what, n in
               (("forward pass", self.forward_graphs), ("optimizer update", self.update_graphs)) if n == 0]
        if self.limit_hits:
            out.append(f"{self.limit_hits} frame(s) hit a recompile limit and run eagerly (TORCH_LOGS=recompiles "
                       f"tells why)")
        if cudagraphs and self.cudagraph_skips:
            out.append(f"{self.cudagraph_skips} graph(s) run without CUDA graphs")
        return out
