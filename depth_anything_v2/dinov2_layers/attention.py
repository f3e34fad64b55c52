"""Multi-head self-attention on `F.scaled_dot_product_attention`, with an explicit-matmul path for bf16 on CPU.

References: facebookresearch/dinov2 dinov2/layers/attention.py.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .linear import Linear

ATTENTION_IMPLS = ("auto", "sdpa", "explicit")
# Score blocks stay below glibc's largest mmap threshold (32 MiB), so they are recycled from the heap instead of
# being mapped and page-faulted in for every layer.
EXPLICIT_CHUNK_BYTES = 16 << 20


def explicit_attention(q: Tensor, k: Tensor, v: Tensor, dropout_p: float = 0.0) -> Tensor:
    """softmax(q k^T / sqrt(D)) v in the inputs' dtype, in query chunks of at most EXPLICIT_CHUNK_BYTES of scores.

    On CPU in bf16 this runs on oneDNN's bf16 matmuls, which on some CPUs are faster than
    `scaled_dot_product_attention`'s flash kernel (`depth_anything_v2.kernels` times both per machine). Autocast is
    switched off so that softmax is not upcast to fp32 and cast back for the second matmul.

    Args:
        q, k, v: (B, heads, N, head_dim).
        dropout_p: dropout on the attention probabilities.

    Returns:
        (B, heads, N, head_dim) in q's dtype: a transposed view of a contiguous (B, N, heads, head_dim) tensor, so
        that merging the heads afterwards is free.
    """
    B, heads, _, head_dim = q.shape
    rows = max(1, EXPLICIT_CHUNK_BYTES // (B * heads * k.shape[-2] * q.element_size()))
    # k and v are strided views of the fused qkv output; for B > 1 a batched matmul would copy them once per chunk.
    kt, v = k.contiguous().transpose(-2, -1), v.contiguous()
    with torch.autocast(q.device.type, enabled=False):
        q = q * head_dim**-0.5
        chunks = [F.dropout(torch.softmax(qc @ kt, -1), dropout_p) @ v for qc in q.split(rows, dim=2)]
        return torch.cat([c.transpose(1, 2) for c in chunks], dim=1).transpose(1, 2)


class Attention(nn.Module):
    """Self-attention over tokens.

    Args:
        dim: token width C.
        num_heads: number of heads; C must be divisible by it.
        qkv_bias: bias on the fused qkv projection.
        proj_bias: bias on the output projection.
        attn_drop: attention dropout probability (training only).
        proj_drop: output dropout probability.
        impl: 'sdpa' (`F.scaled_dot_product_attention`), 'explicit' (`explicit_attention`), or 'auto', the
            untimed default: explicit for bf16 on CPU, SDPA everywhere else. The scripts replace it with the
            choice timed on the machine (`depth_anything_v2.kernels.tune_kernels`).
    """

    def __init__(
        self,
        dim: int,
        num_heads: int = 8,
        qkv_bias: bool = False,
        proj_bias: bool = True,
        attn_drop: float = 0.0,
        proj_drop: float = 0.0,
        impl: str = "auto",
    ) -> None:
        super().__init__()
        if impl not in ATTENTION_IMPLS:
            raise ValueError(f"attention impl {impl!r} is not one of {ATTENTION_IMPLS}")
        self.num_heads = num_heads
        self.qkv = Linear(dim, dim * 3, bias=qkv_bias)
        self.attn_drop = attn_drop
        self.proj = Linear(dim, dim, bias=proj_bias)
        self.proj_drop = nn.Dropout(proj_drop)
        self.impl = impl

    def forward(self, x: Tensor) -> Tensor:
        """x: (B, N, C) tokens -> (B, N, C)."""
        B, N, C = x.shape
        qkv = self.qkv(x).reshape(B, N, 3, self.num_heads, C // self.num_heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        dropout_p = self.attn_drop if self.training else 0.0
        explicit = self.impl == "explicit" or (
            self.impl == "auto" and q.device.type == "cpu" and q.dtype == torch.bfloat16
        )
        if explicit:
            x = explicit_attention(q, k, v, dropout_p)
        else:
            x = F.scaled_dot_product_attention(q, k, v, dropout_p=dropout_p)
        x = x.transpose(1, 2).reshape(B, N, C)
        return self.proj_drop(self.proj(x))
