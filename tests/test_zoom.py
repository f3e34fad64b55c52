"""Zoom consistency: K bookkeeping of zoom_view, slope 0 for a camera-aware oracle, -1 for a size-only model."""

from __future__ import annotations

import math

import pytest
import torch

from util.zoom import zoom_slope, zoom_view

H, W = 70, 98


def intrinsics(fx: float, fy: float, cx: float, cy: float) -> torch.Tensor:
    return torch.tensor([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])


K_BATCH = torch.stack([intrinsics(80.0, 82.0, 47.0, 36.5), intrinsics(120.0, 118.0, 51.3, 30.2)])


def pixel_rays(K: torch.Tensor) -> torch.Tensor:
    """(B, H, W, 3) rays ((u - cx) / fx, (v - cy) / fy, 1) through the pixel centres (OpenCV convention)."""
    v, u = torch.meshgrid(torch.arange(H, dtype=torch.float64), torch.arange(W, dtype=torch.float64), indexing="ij")
    K = K.double()[:, None, None]
    x = (u - K[..., 0, 2]) / K[..., 0, 0]
    y = (v - K[..., 1, 2]) / K[..., 1, 1]
    return torch.stack([x, y, torch.ones_like(x)], dim=-1)


def tilted_plane_depth(K: torch.Tensor) -> torch.Tensor:
    """(B, H, W) true planar depth (metres) of the plane n . P = 4 m seen through K."""
    normal = torch.tensor([0.5, -0.7, 1.0], dtype=torch.float64)
    return (4.0 / (pixel_rays(K) @ normal)).float()


def oracle(image: torch.Tensor, K: torch.Tensor) -> torch.Tensor:
    """A perfect camera-aware model: renders the scene's true depth for whatever K it is given."""
    return tilted_plane_depth(K)


def textured_wall(K: torch.Tensor, distance: float = 3.0) -> torch.Tensor:
    """(B, 3, H, W) image of a fronto-parallel wall at `distance` metres painted with intensity 0.2 X + 0.1 Y."""
    points = pixel_rays(K) * distance
    intensity = 0.2 * points[..., 0] + 0.1 * points[..., 1]
    return intensity[:, None].expand(-1, 3, -1, -1).float()


def size_only_model(image: torch.Tensor, K: torch.Tensor) -> torch.Tensor:
    """Ignores K: depth = 50 / (apparent size of the texture), the size in pixels of one unit of intensity."""
    apparent_size = 1 / (image[:, 0, :, 1:] - image[:, 0, :, :-1]).abs().mean(dim=(1, 2))
    return (50.0 / apparent_size)[:, None, None].expand(-1, H, W)


def test_zoom_view_intrinsics_follow_the_image_content() -> None:
    v, u = torch.meshgrid(torch.arange(H, dtype=torch.float32), torch.arange(W, dtype=torch.float32), indexing="ij")
    ramp = torch.stack([u, v, torch.zeros_like(u)])[None].expand(2, -1, -1, -1)  # each pixel shows its (u, v)
    for z in (1.0, 1.5, 2.0, 3.3):
        image_z, K_z, box = zoom_view(ramp, K_BATCH, z)
        assert image_z.shape == ramp.shape
        # A 3-D point seen at zoomed pixel (u', v') through K_z must project through K onto the pixel whose
        # content image_z shows there.
        points = pixel_rays(K_z) * 2.7
        projected = points @ K_BATCH.double().transpose(1, 2)[:, None]
        uv = projected[..., :2] / projected[..., 2:]
        torch.testing.assert_close(image_z[:, :2].permute(0, 2, 3, 1).double(), uv, atol=1e-3, rtol=0)
        # The box is the crop-then-resize of the shared conventions: cx' = sx (cx - x0 + 0.5) - 0.5, sx = W / w.
        y0, x0, h, w = box
        assert (h, w) == pytest.approx((H / z, W / z))
        sx, sy = W / w, H / h
        assert K_z[:, 0, 0] == pytest.approx(sx * K_BATCH[:, 0, 0]) and K_z[:, 1, 1] == pytest.approx(
            sy * K_BATCH[:, 1, 1]
        )
        assert K_z[:, 0, 2] == pytest.approx(sx * (K_BATCH[:, 0, 2] - x0 + 0.5) - 0.5, abs=1e-4)
        assert K_z[:, 1, 2] == pytest.approx(sy * (K_BATCH[:, 1, 2] - y0 + 0.5) - 0.5, abs=1e-4)
    image_1, K_1, _ = zoom_view(ramp, K_BATCH, 1.0)
    torch.testing.assert_close(image_1, ramp)
    torch.testing.assert_close(K_1, K_BATCH)
    with pytest.raises(ValueError, match="zoom factor must be >= 1"):
        zoom_view(ramp, K_BATCH, 0.8)


@pytest.mark.parametrize("z", [2.0, 1.5])
def test_oracle_with_true_depth_has_zero_slope(z: float) -> None:
    image = torch.rand(2, 3, H, W, generator=torch.Generator().manual_seed(0))
    valid = torch.ones(2, H, W, dtype=torch.bool)
    valid[1, :, : W // 2] = False
    slopes = zoom_slope(oracle, image, K_BATCH, valid, z=z)
    assert slopes.shape == (2,)
    assert slopes.abs().max().item() < 2e-4  # bilinear resampling of the smooth depth costs ~2e-5


@pytest.mark.parametrize("z", [2.0, 1.7])
def test_size_only_model_has_slope_minus_one(z: float) -> None:
    image = textured_wall(K_BATCH)
    slopes = zoom_slope(size_only_model, image, K_BATCH, torch.ones(2, H, W, dtype=torch.bool), z=z)
    torch.testing.assert_close(slopes, torch.full((2,), -1.0), atol=1e-3, rtol=0)


def test_image_without_valid_pixels_gives_nan() -> None:
    valid = torch.ones(2, H, W, dtype=torch.bool)
    valid[0] = False
    slopes = zoom_slope(oracle, torch.zeros(2, 3, H, W), K_BATCH, valid)
    assert math.isnan(slopes[0].item()) and abs(slopes[1].item()) < 1e-3
    with pytest.raises(ValueError, match="zoom factor must be > 1"):
        zoom_slope(oracle, torch.zeros(2, 3, H, W), K_BATCH, valid, z=1.0)
