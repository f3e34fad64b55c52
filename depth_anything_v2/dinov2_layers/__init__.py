"""DINOv2 building blocks, one concept per file.

References: facebookresearch/dinov2 (dinov2/layers), as vendored by Depth Anything V2; rewritten with
`F.scaled_dot_product_attention` and without xFormers or nested-tensor paths.
"""

from .attention import Attention
from .block import Block
from .drop_path import DropPath
from .layer_scale import LayerScale
from .linear import LINEAR_IMPLS, Linear
from .mlp import Mlp
from .patch_embed import PatchEmbed
from .swiglu_ffn import SwiGLUFFNFused

__all__ = [
    "Attention",
    "Block",
    "DropPath",
    "LayerScale",
    "LINEAR_IMPLS",
    "Linear",
    "Mlp",
    "PatchEmbed",
    "SwiGLUFFNFused",
]
