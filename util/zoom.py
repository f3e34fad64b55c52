"""Zoom consistency: does predicted metric depth stay put when the same view is seen through a longer lens?

A centre crop of 1/z of the image, resized back to the input size, is exactly the view of a camera at the same
place with focal lengths z fx, z fy. A camera-aware model that is given the updated K predicts the same depth
for the same surface: zoom_slope = d log(depth) / d log(z) = 0. A model that reads depth from apparent size
alone predicts depth / z: zoom_slope = -1. Meaningful for metric models (a relative model predicts disparity).

    python -m util.zoom --load-from runs/exp/best.pth --dataset demo_data/scenes_default --split val --z 2
"""

from __future__ import annotations

import argparse
import math
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import DataLoader

from dataset.registry import build_dataset
from depth_anything_v2.loading import build_model_from_checkpoint

from .dist import resolve_device

Predictor = Callable[[Tensor, Tensor], Tensor]


def _zoom_coords(size: int, z: float) -> Tensor:
    """Full-view pixel centres u of zoomed pixels u' = 0..size-1: u = (u' - c) / z + c, c = (size - 1) / 2.

    In the OpenCV convention the image spans pixel edges [-0.5, size - 0.5], so its centre is c and the centre
    crop of width size / z maps onto the whole image by scaling about c.
    """
    c = (size - 1) / 2
    return (torch.arange(size, dtype=torch.float64) - c) / z + c


def _sampling_grid(u: Tensor, v: Tensor, height: int, width: int, batch: int, like: Tensor) -> Tensor:
    """(B, h, w, 2) grid_sample grid (align_corners=False) that reads pixel centres (u[j], v[i])."""
    x = (2 * u + 1) / width - 1
    y = (2 * v + 1) / height - 1
    grid = torch.stack(torch.meshgrid(x, y, indexing="xy"), dim=-1)
    return grid.to(device=like.device, dtype=like.dtype).expand(batch, -1, -1, -1)


def zoom_view(image: Tensor, K: Tensor, z: float) -> tuple[Tensor, Tensor, tuple[float, float, float, float]]:
    """Centre crop of 1/z of the image, resized back (bilinear) to (H, W), and its intrinsics.

    The crop box is exact in floating point (no rounding to whole pixels): zoomed pixel u' shows the full-view
    point u = (u' - c) / z + c with c = (W - 1) / 2, so K_z has fx' = z fx and cx' = z (cx - c) + c (same in y).

    Args:
        image: (B, C, H, W) float image (any normalisation).
        K: (B, 3, 3) intrinsics in pixels of `image`, OpenCV convention.
        z: zoom factor >= 1.

    Returns:
        image_z: (B, C, H, W) zoomed view, dtype of `image`.
        K_z: (B, 3, 3) intrinsics in pixels of image_z, dtype of `K`.
        box: (y0, x0, h, w) floats, the crop window in pixels of `image`: the window's top-left pixel edge is at
            (x0 - 0.5, y0 - 0.5), i.e. cropping at (x0, y0) moves cx by -x0 as an integer crop does, and it is
            h x w pixels large (H / z x W / z).
    """
    if z < 1:
        raise ValueError(f"zoom_view: zoom factor must be >= 1 (zooming out needs padding), got {z}")
    B, _, H, W = image.shape
    grid = _sampling_grid(_zoom_coords(W, z), _zoom_coords(H, z), H, W, B, image)
    image_z = F.grid_sample(image, grid, mode="bilinear", padding_mode="border", align_corners=False)
    A = torch.tensor(
        [[z, 0.0, (1 - z) * (W - 1) / 2], [0.0, z, (1 - z) * (H - 1) / 2], [0.0, 0.0, 1.0]],
        dtype=K.dtype,
        device=K.device,
    )
    box = (H / 2 * (1 - 1 / z), W / 2 * (1 - 1 / z), H / z, W / z)
    return image_z, A @ K, box


@torch.no_grad()
def zoom_slope(
    predict: Predictor, image: Tensor, K: Tensor, valid: Tensor, z: float = 2.0, depth_full: Tensor | None = None
) -> Tensor:
    """Per-image zoom slope: median over valid pixels of (log D_zoom - log D_full) / log z.

    The zoomed prediction is mapped back onto the full view: every full-view pixel u inside the crop window
    reads the zoomed depth at u' = z (u - c) + c (bilinear), so the comparison runs on the full view's pixel
    grid and the full prediction is never resampled.

    Args:
        predict: (image (B, 3, H, W), K (B, 3, 3)) -> depth (B, H, W) in metres.
        image: (B, 3, H, W) network input of the full view.
        K: (B, 3, 3) intrinsics in pixels of `image`, OpenCV convention.
        valid: (B, H, W) bool, full-view pixels to compare (e.g. not padding).
        z: zoom factor > 1.
        depth_full: (B, H, W) `predict(image, K)` when the caller has it already (it is not run again).

    Returns:
        (B,) float32 slopes (0: camera-aware, -1: depth from apparent size); NaN for an image without any
        valid pixel with positive finite depth in both predictions.
    """
    if z <= 1:
        raise ValueError(f"zoom_slope: zoom factor must be > 1, got {z}")
    B, _, H, W = image.shape
    depth_full = (predict(image, K) if depth_full is None else depth_full).float()
    image_z, K_z, _ = zoom_view(image, K, z)
    depth_zoom = predict(image_z, K_z).float()
    u_zoom = z * (torch.arange(W, dtype=torch.float64) - (W - 1) / 2) + (W - 1) / 2
    v_zoom = z * (torch.arange(H, dtype=torch.float64) - (H - 1) / 2) + (H - 1) / 2
    grid = _sampling_grid(u_zoom, v_zoom, H, W, B, depth_zoom)
    depth_back = F.grid_sample(depth_zoom[:, None], grid, mode="bilinear", align_corners=False)[:, 0]
    # Tolerance for the window edge: u' is exactly 0 or W - 1 there up to rounding.
    inside_x = (u_zoom >= -1e-6) & (u_zoom <= W - 1 + 1e-6)
    inside_y = (v_zoom >= -1e-6) & (v_zoom <= H - 1 + 1e-6)
    inside = (inside_y[:, None] & inside_x[None, :]).to(valid.device)
    usable = valid & inside & torch.isfinite(depth_full) & (depth_full > 0)
    usable = usable & torch.isfinite(depth_back) & (depth_back > 0)
    log_ratio = torch.where(usable, depth_back, 1.0).log() - torch.where(usable, depth_full, 1.0).log()
    log_ratio = torch.where(usable, log_ratio, math.nan)
    return log_ratio.flatten(1).nanmedian(dim=1).values / math.log(z)


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Mean zoom_slope of a checkpoint on the images with intrinsics.")
    parser.add_argument("--load-from", required=True, help="checkpoint (ours or an official DA-V2 .pth)")
    parser.add_argument("--dataset", required=True, help="dataset name, name under dataset/splits/, or folder")
    parser.add_argument("--split", default="val")
    parser.add_argument("--z", type=float, default=2.0, help="centre zoom factor (> 1)")
    parser.add_argument("--input-size", type=int, default=518, help="evaluation size passed to the dataset")
    parser.add_argument("--encoder", default=None, help="only for official checkpoints")
    parser.add_argument("--max-depth", type=float, default=None, help="metres; only for official metric checkpoints")
    parser.add_argument("--max-images", type=int, default=None, help="stop after this many images with intrinsics")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda | mps")
    parser.add_argument(
        "--allow-offcentre-principal-point",
        action="store_true",
        help="accept K whose principal point lies far from the image centre (crops), as train.py does",
    )
    return parser


@torch.no_grad()
def main(args: argparse.Namespace) -> float:
    """Print and return the mean zoom_slope over the split's images that have intrinsics."""
    device = resolve_device(args.device)
    model = build_model_from_checkpoint(args.load_from, device=device, encoder=args.encoder, max_depth=args.max_depth)
    dataset = build_dataset(args.dataset, args.split, (args.input_size, args.input_size), mode="val",
                            allow_offcentre_principal_point=args.allow_offcentre_principal_point)  # fmt: skip

    def predict(image: Tensor, K: Tensor) -> Tensor:
        return model(image, K)

    slopes = []
    for batch in DataLoader(dataset, batch_size=1):
        if not bool(batch["has_intrinsics"].all()):
            continue
        image, K = batch["image"].to(device), batch["intrinsics"].to(device)
        valid = batch["image_valid"].to(device)
        slope = zoom_slope(predict, image, K, valid, args.z).item()
        if math.isfinite(slope):
            slopes.append(slope)
            print(f"{len(slopes):5d} {batch['image_path'][0]} zoom_slope {slope:+.4f}")
        if args.max_images is not None and len(slopes) >= args.max_images:
            break
    if not slopes:
        raise SystemExit(f"{args.dataset} ({args.split}): no image with intrinsics, zoom_slope needs them")
    mean = sum(slopes) / len(slopes)
    print(f"mean zoom_slope {mean:+.4f} over {len(slopes)} images (z = {args.z}; 0: camera-aware, -1: size-based)")
    return mean


if __name__ == "__main__":
    main(get_args_parser().parse_args())
