"""The fused kernels behind `swapout.ops`: ``Y = Theta1*X + Theta2*F(X)`` in one pass over memory, masks drawn
from a counter-based generator and regenerated in the backward pass instead of stored.

- `swapout.kernels.fused`: the op and its dispatch (which kernel handles which tensors, the fallback);
- `swapout.kernels.cpu`: the C kernel (``csrc/swapout_cpu.c``), compiled at first use, loaded with ctypes;
- `swapout.kernels.triton_cuda`: the same words for the same elements on CUDA, in Triton.

Nothing here is needed to use swapout: `swapout.ops` falls back to the reference op where no kernel applies.
"""
