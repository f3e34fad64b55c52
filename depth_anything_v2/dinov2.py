"""DINOv2 vision transformer backbone with the key names of the official checkpoints.

References: facebookresearch/dinov2 dinov2/models/vision_transformer.py, as vendored by Depth Anything V2
(`block_chunks=0`, so keys are `blocks.N.*`; no register tokens).
"""

from __future__ import annotations

import math
from contextlib import nullcontext
from functools import partial
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from .configs import BACKBONE_CONFIGS, PATCH_SIZE
from .dinov2_layers import Block, Mlp, PatchEmbed, SwiGLUFFNFused

BlockHook = Callable[[int, Tensor], Tensor]


class DinoVisionTransformer(nn.Module):
    """ViT with a class token and learned position embeddings interpolated to the input size.

    Args:
        img_size: training size whose position grid is stored (518 -> 37 x 37 patches).
        patch_size: patch side in pixels.
        embed_dim, depth, num_heads, mlp_ratio: transformer shape.
        init_values: LayerScale initial value (1.0 in Depth Anything V2).
        ffn_layer: 'mlp' or 'swiglufused'.
        interpolate_offset: added to the patch counts before bicubic interpolation (DINOv2's 0.1).
        interpolate_antialias: antialiasing in that interpolation.
    """

    def __init__(
        self,
        img_size: int = 518,
        patch_size: int = PATCH_SIZE,
        in_chans: int = 3,
        embed_dim: int = 768,
        depth: int = 12,
        num_heads: int = 12,
        mlp_ratio: float = 4.0,
        init_values: float | None = 1.0,
        ffn_layer: str = "mlp",
        drop_path_rate: float = 0.0,
        interpolate_offset: float = 0.1,
        interpolate_antialias: bool = False,
    ) -> None:
        super().__init__()
        self.embed_dim = embed_dim
        # Recompute each block's activations in the backward pass instead of storing them (large encoders).
        self.grad_checkpointing = False
        self.patch_size = patch_size
        self.interpolate_offset = interpolate_offset
        self.interpolate_antialias = interpolate_antialias
        self.patch_embed = PatchEmbed(img_size=img_size, patch_size=patch_size, in_chans=in_chans, embed_dim=embed_dim)
        num_patches = self.patch_embed.num_patches
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, num_patches + 1, embed_dim))
        # Unused in depth estimation but present in every official checkpoint; frozen so DDP needs no
        # find_unused_parameters.
        self.mask_token = nn.Parameter(torch.zeros(1, embed_dim), requires_grad=False)
        ffn = {"mlp": Mlp, "swiglufused": SwiGLUFFNFused}[ffn_layer]
        self.blocks = nn.ModuleList(
            Block(
                dim=embed_dim,
                num_heads=num_heads,
                mlp_ratio=mlp_ratio,
                drop_path=drop_path_rate * i / max(depth - 1, 1),
                init_values=init_values,
                norm_layer=partial(nn.LayerNorm, eps=1e-6),
                ffn_layer=ffn,
            )
            for i in range(depth)
        )
        self.norm = nn.LayerNorm(embed_dim, eps=1e-6)
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.normal_(self.cls_token, std=1e-6)

    def interpolate_pos_encoding(self, x: Tensor, height: int, width: int) -> Tensor:
        """Position embeddings for an input of height x width pixels, (1, 1 + N, C).

        Bicubic with `scale_factor` (not `size`), as the official code: the scale factor also defines the
        sampling coordinates, so using `size` gives different numbers.
        """
        num_patches = x.shape[1] - 1
        num_stored = self.pos_embed.shape[1] - 1
        if num_patches == num_stored and height == width:
            return self.pos_embed
        pos_embed = self.pos_embed.float()
        dim = x.shape[-1]
        rows = height // self.patch_size + self.interpolate_offset
        cols = width // self.patch_size + self.interpolate_offset
        side = math.sqrt(num_stored)
        grid = pos_embed[:, 1:].reshape(1, int(side), int(side), dim).permute(0, 3, 1, 2)
        grid = F.interpolate(
            grid, scale_factor=(rows / side, cols / side), mode="bicubic", antialias=self.interpolate_antialias
        )
        if grid.shape[-2:] != (int(rows), int(cols)):
            raise RuntimeError(f"position grid {tuple(grid.shape[-2:])} does not match {int(rows)}x{int(cols)}")
        grid = grid.permute(0, 2, 3, 1).reshape(1, -1, dim)
        return torch.cat((pos_embed[:, :1], grid), dim=1).to(x.dtype)

    def prepare_tokens(self, x: Tensor) -> Tensor:
        """(B, 3, H, W) normalized image -> (B, 1 + N, C) class token and patch tokens with positions."""
        _, _, H, W = x.shape
        x = self.patch_embed(x)
        x = torch.cat((self.cls_token.expand(x.shape[0], -1, -1), x), dim=1)
        return x + self.interpolate_pos_encoding(x, H, W)

    def get_intermediate_layers(
        self,
        x: Tensor,
        n: list[int],
        return_class_token: bool = False,
        norm: bool = True,
        after_block: BlockHook | None = None,
        grad_from_block: int = 0,
    ) -> tuple:
        """Outputs of the blocks listed in `n`.

        Args:
            x: (B, 3, H, W) ImageNet-normalized image, H and W multiples of the patch size.
            n: block indices to return.
            return_class_token: also return each block's class token.
            norm: apply the final LayerNorm to the returned tokens.
            after_block: optional `(block_index, tokens) -> tokens` applied after every block (camera injection).
            grad_from_block: blocks before this index run without autograd (frozen backbone below the first
                block that needs gradients); later blocks are recomputed in the backward pass when
                `grad_checkpointing` is set.

        Returns:
            A tuple of (B, N, C) patch tokens, or of ((B, N, C), (B, C)) pairs with `return_class_token`.
        """
        outputs = []
        with torch.no_grad() if grad_from_block > 0 else nullcontext():
            x = self.prepare_tokens(x)
        for i, block in enumerate(self.blocks):
            if i < grad_from_block:
                with torch.no_grad():
                    x = block(x)
            elif self.grad_checkpointing and torch.is_grad_enabled():
                x = checkpoint(block, x, use_reentrant=False)
            else:
                x = block(x)
            if after_block is not None:
                x = after_block(i, x)
            if i in n:
                outputs.append(x)
        if len(outputs) != len(n):
            raise ValueError(f"asked for blocks {n} of a {len(self.blocks)}-block backbone")
        if norm:
            outputs = [self.norm(out) for out in outputs]
        patches = [out[:, 1:] for out in outputs]
        if return_class_token:
            return tuple(zip(patches, [out[:, 0] for out in outputs]))
        return tuple(patches)


def build_dinov2(encoder: str, **kwargs: object) -> DinoVisionTransformer:
    """The Depth Anything V2 backbone for 'vits' | 'vitb' | 'vitl' | 'vitg'."""
    if encoder not in BACKBONE_CONFIGS:
        raise ValueError(f"unknown encoder {encoder!r}; choose one of {sorted(BACKBONE_CONFIGS)}")
    return DinoVisionTransformer(**BACKBONE_CONFIGS[encoder], **kwargs)
