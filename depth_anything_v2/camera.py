"""Camera encoder: pinhole intrinsics -> camera tokens, injected into the backbone by zero-initialised
cross-attention so that a student built from an official checkpoint starts exactly equal to it.

Design and reasons: docs/CAMERA.md. Conventions: K in pixels of the
network input, OpenCV pixel centres (pixel u spans [u - 0.5, u + 0.5]); camera axes x right, y down, z forward.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from .dinov2_layers import Block
from .geometry import canonical_intrinsics

NUM_FREQUENCIES = 6
GRID = 3
NUM_CAMERA_TOKENS = 1 + GRID * GRID
# The Hypersim metric teacher's implicit focal length is about 598 px at a 518 px short side; log focal is
# measured relative to it, in units of the short side so that it does not depend on the input resolution.
DEFAULT_FOCAL_REF = 598.0 / 518.0


def fourier_embed(s: Tensor, scale: float) -> Tensor:
    """(..., n) scalars -> (..., n * (1 + 2 * NUM_FREQUENCIES)): [s, sin(2^k pi s / R), cos(2^k pi s / R)]."""
    freqs = (2.0 ** torch.arange(NUM_FREQUENCIES, device=s.device, dtype=s.dtype)) * math.pi / scale
    angles = s[..., None] * freqs
    return torch.cat([s[..., None], angles.sin(), angles.cos()], dim=-1).flatten(-2)


def _with_canonical(K: Tensor, has_intrinsics: Tensor, height: int, width: int) -> Tensor:
    """(B, 3, 3) float32 K where has_intrinsics, `canonical_intrinsics` elsewhere."""
    canonical = torch.as_tensor(canonical_intrinsics(height, width), dtype=torch.float32, device=K.device)
    return torch.where(has_intrinsics[:, None, None], K.float(), canonical)


def camera_features(K: Tensor, height: int, width: int, focal_ref: float = DEFAULT_FOCAL_REF) -> tuple[Tensor, Tensor]:
    """Resolution-independent intrinsics features.

    Args:
        K: (B, 3, 3) intrinsics in pixels of an image of height x width pixels (OpenCV convention).

    Returns:
        global_feats: (B, 6) [log focal / (focal_ref * short side), log fx/fy, principal offsets (px, py) as
            tangents, half-FOV tangents (tx, ty)]; all unchanged when image and K are resized together.
        ray_feats: (B, 9, 2) ray tangents ((u - cx) / fx, (v - cy) / fy) at a 3x3 grid of image points.
    """
    K = K.float()
    fx, fy = K[:, 0, 0], K[:, 1, 1]
    cx, cy = K[:, 0, 2] + 0.5, K[:, 1, 2] + 0.5  # half-pixel coordinates: the image spans [0, W] x [0, H]
    focal = torch.sqrt(fx * fy)
    log_focal = torch.log(focal / (focal_ref * min(height, width)))
    global_feats = torch.stack(
        [
            log_focal,
            torch.log(fx / fy),
            (cx - width / 2) / fx,
            (cy - height / 2) / fy,
            width / (2 * fx),
            height / (2 * fy),
        ],
        dim=-1,
    )
    steps = (torch.arange(GRID, device=K.device, dtype=torch.float32) + 0.5) / GRID
    v, u = torch.meshgrid(steps * height, steps * width, indexing="ij")
    ray_x = (u.reshape(1, -1) - cx[:, None]) / fx[:, None]
    ray_y = (v.reshape(1, -1) - cy[:, None]) / fy[:, None]
    return global_feats, torch.stack([ray_x, ray_y], dim=-1)


class CameraAdapter(nn.Module):
    """Per-block output of the camera cross-attention: LayerNorm on the image tokens and a zero-initialised
    output projection (so the block's output is unchanged at initialisation)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.out = nn.Linear(dim, dim)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)


class CameraEncoder(nn.Module):
    """Turns intrinsics into camera tokens and adds their cross-attention to backbone blocks >= inject_layer.

    Tokens: one global token (MLP of the Fourier-embedded global features) and 3x3 ray tokens (shared MLP of
    the embedded ray tangents plus a learned position), refined by `num_blocks` transformer blocks
    (LayerScale 0.01). Samples without intrinsics use learned null tokens, chosen per sample with
    `torch.where`, so one batch can mix both and every parameter is used in every step.

    Injection after block l >= inject_layer: x <- x + W_o^l . MHA(q = W_q LN_l(x), k, v = W_k T, W_v T);
    W_q, W_k, W_v are shared across blocks, W_o^l is per block and zero-initialised.

    Output prior: log depth <- log depth + w * log_focal + b on calibrated samples, w = b = 0 at
    initialisation; w learns the pinhole relation depth ~ focal.

    Args:
        dim: backbone token width C.
        num_heads: cross-attention heads.
        depth: number of backbone blocks.
        inject_layer: first block (0-based) whose output receives camera information.
        num_blocks: transformer blocks in the token encoder.
        focal_ref: reference focal length in units of the input's short side.
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        depth: int,
        inject_layer: int = 0,
        num_blocks: int = 2,
        focal_ref: float = DEFAULT_FOCAL_REF,
    ) -> None:
        super().__init__()
        if not 0 <= inject_layer < depth:
            raise ValueError(f"cam_token_inject_layer={inject_layer} is outside the backbone's blocks 0..{depth - 1}")
        self.num_heads = num_heads
        self.inject_layer = inject_layer
        self.focal_ref = focal_ref
        embed = 1 + 2 * NUM_FREQUENCIES
        self.global_mlp = nn.Sequential(nn.Linear(6 * embed, dim // 2), nn.GELU(), nn.Linear(dim // 2, dim))
        self.ray_mlp = nn.Sequential(nn.Linear(2 * embed, dim // 2), nn.GELU(), nn.Linear(dim // 2, dim))
        self.ray_pos = nn.Parameter(torch.randn(1, GRID * GRID, dim) * 0.02)
        self.null_tokens = nn.Parameter(torch.randn(1, NUM_CAMERA_TOKENS, dim) * 0.02)
        self.norm_in = nn.LayerNorm(dim, eps=1e-6)
        self.blocks = nn.ModuleList(Block(dim, num_heads, init_values=0.01) for _ in range(num_blocks))
        self.norm_out = nn.LayerNorm(dim, eps=1e-6)
        self.to_q = nn.Linear(dim, dim)
        self.to_kv = nn.Linear(dim, 2 * dim)
        self.adapters = nn.ModuleDict({str(i): CameraAdapter(dim) for i in range(inject_layer, depth)})
        self.focal_weight = nn.Parameter(torch.zeros(()))
        self.focal_bias = nn.Parameter(torch.zeros(()))

    def tokens(self, K: Tensor, has_intrinsics: Tensor, height: int, width: int) -> Tensor:
        """(B, 3, 3) K, (B,) bool -> (B, 10, C) float32 camera tokens."""
        B = K.shape[0]
        K = _with_canonical(K, has_intrinsics, height, width)
        global_feats, ray_feats = camera_features(K, height, width, self.focal_ref)
        scales = global_feats.new_tensor([2.0, 1.0, 1.0, 1.0, 1.0, 1.0])
        with torch.autocast(K.device.type, enabled=False):
            global_token = self.global_mlp(fourier_embed(global_feats / scales, 1.0))[:, None]
            ray_tokens = self.ray_mlp(fourier_embed(ray_feats, 1.0)) + self.ray_pos
            x = self.norm_in(torch.cat([global_token, ray_tokens], dim=1))
            for block in self.blocks:
                x = block(x)
            x = self.norm_out(x)
        return torch.where(has_intrinsics[:, None, None], x, self.null_tokens.expand(B, -1, -1))

    def inject(self, block_index: int, x: Tensor, tokens: Tensor) -> Tensor:
        """Add the camera cross-attention to the output x (B, N, C) of block `block_index`.

        Computed for few keys: W_q is folded into the T keys and W_o into the T values of each head, so each of
        the N tokens costs 2 * heads * T * C multiply-adds instead of the 2 * C^2 of projecting every token
        (C=384, 6 heads, T=10: 6x fewer). Equal to the projected form up to rounding (tests/test_camera.py).
        """
        if block_index < self.inject_layer:
            return x
        adapter = self.adapters[str(block_index)]
        B, N, C = x.shape
        heads = self.num_heads
        head_dim = C // heads
        T = tokens.shape[1]
        k, v = self.to_kv(tokens).reshape(B, T, 2, heads, head_dim).permute(2, 0, 3, 1, 4)  # (B, heads, T, d)
        scale = head_dim**-0.5
        w_q, b_q = self.to_q.weight.view(heads, head_dim, C), self.to_q.bias.view(heads, head_dim)
        keys = torch.einsum("bhtd,hdc->bhtc", k, w_q).reshape(B, heads * T, C) * scale
        key_bias = torch.einsum("bhtd,hd->bht", k, b_q).reshape(B, 1, heads * T) * scale
        values = torch.einsum("bhtd,chd->bhtc", v, adapter.out.weight.view(C, heads, head_dim))
        scores = torch.baddbmm(key_bias.to(keys.dtype), adapter.norm(x).to(keys.dtype), keys.transpose(1, 2))
        probs = scores.view(B, N, heads, T).softmax(-1).view(B, N, heads * T)
        return x + (probs.to(values.dtype) @ values.reshape(B, heads * T, C)) + adapter.out.bias

    def log_depth_offset(self, K: Tensor, has_intrinsics: Tensor, height: int, width: int) -> Tensor:
        """(B,) offset added to log depth: w * log_focal + b on calibrated samples, 0 on the others."""
        K = _with_canonical(K, has_intrinsics, height, width)
        log_focal = camera_features(K, height, width, self.focal_ref)[0][:, 0]
        return torch.where(has_intrinsics, self.focal_weight * log_focal + self.focal_bias, torch.zeros_like(log_focal))
