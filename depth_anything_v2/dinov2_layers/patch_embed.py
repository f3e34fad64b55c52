"""Image to patch tokens with a strided convolution.

References: facebookresearch/dinov2 dinov2/layers/patch_embed.py.
"""

from __future__ import annotations

from torch import Tensor, nn

from ..configs import PATCH_SIZE


class PatchEmbed(nn.Module):
    """(B, 3, H, W) image -> (B, H/p * W/p, C) tokens, row-major over patches."""

    def __init__(
        self, img_size: int = 518, patch_size: int = PATCH_SIZE, in_chans: int = 3, embed_dim: int = 768
    ) -> None:
        super().__init__()
        self.img_size = (img_size, img_size)
        self.patch_size = (patch_size, patch_size)
        self.num_patches = (img_size // patch_size) ** 2
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, x: Tensor) -> Tensor:
        _, _, H, W = x.shape
        p = self.patch_size[0]
        if H % p or W % p:
            raise ValueError(f"input size {H}x{W} is not a multiple of the patch size {p}")
        return self.proj(x).flatten(2).transpose(1, 2)
