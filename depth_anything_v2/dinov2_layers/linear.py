"""nn.Linear with a choice of CPU kernel for fp32 inference.

ATen runs fp32 linears on its BLAS (MKL's sgemm in the x86 wheels), which on AMD CPUs takes its AVX2 code path;
oneDNN's matmul uses AVX-512 on any CPU that has it, about twice as fast there. Which is faster is a property of
the machine, so `depth_anything_v2.kernels.tune_kernels` times both and sets `impl`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

LINEAR_IMPLS = ("aten", "onednn")


def _onednn_applies(x: Tensor, weight: Tensor) -> bool:
    """oneDNN's op has no autograd formula and no export or compile translation: fp32 on the CPU, without
    autocast, gradients, tracing or compiling only."""
    if x.device.type != "cpu" or x.dtype != torch.float32 or weight.dtype != torch.float32:
        return False
    if torch.is_autocast_enabled("cpu") or torch.compiler.is_compiling() or torch.jit.is_tracing():
        return False
    return not (torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad))


class Linear(nn.Linear):
    """nn.Linear (same parameters and state-dict keys) whose fp32 inference on the CPU can run on oneDNN.

    Attribute `impl`: 'aten' (default, `F.linear`) or 'onednn' (`torch.ops.mkldnn._linear_pointwise` where it
    applies, `F.linear` elsewhere); both give the same result up to float rounding.
    """

    impl = "aten"

    def forward(self, x: Tensor) -> Tensor:
        """x: (..., in_features) -> (..., out_features)."""
        if self.impl == "onednn" and _onednn_applies(x, self.weight):
            return torch.ops.mkldnn._linear_pointwise(x, self.weight, self.bias, "none", [], "")
        return F.linear(x, self.weight, self.bias)
