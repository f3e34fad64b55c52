"""Image, depth and K move together: a property test on synthetic scenes of known geometry, and checks of
each K update (zoom in, zoom out, crop, flip, validation resize)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from dataset import GenericDatasetWithIntrinsics
from dataset.synthetic import Scene, random_intrinsics
from dataset.transform import jitter_normalize, normalize_image, sample_train_affine, train_view, val_view, warp_view
from depth_anything_v2.configs import IMAGENET_MEAN, IMAGENET_STD
from depth_anything_v2.geometry import crop_intrinsics, flip_intrinsics, scale_intrinsics, unproject


def to_rgb(image: np.ndarray) -> np.ndarray:
    return (image.transpose(1, 2, 0) * np.array(IMAGENET_STD) + np.array(IMAGENET_MEAN)) * 255


@pytest.fixture(scope="module", params=[0, 1])
def scene_dataset(request, tmp_path_factory):
    rng = np.random.default_rng(request.param)
    scene = Scene.random(rng)
    K = random_intrinsics(rng, 160, 120, (35, 85))
    rgb, depth = scene.render(K, 160, 120)
    folder = tmp_path_factory.mktemp(f"scene{request.param}")
    cv2.imwrite(str(folder / "i.png"), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    np.save(folder / "d.npy", depth)
    np.save(folder / "k.npy", K)
    (folder / "list.txt").write_text("i.png d.npy k.npy\n")
    dataset = GenericDatasetWithIntrinsics(
        folder / "list.txt", size=(70, 98), hflip=False, photometric=False, zoom_range=(0.6, 2.2)
    )
    return scene, dataset


def test_augmented_depth_unprojects_onto_the_true_surfaces_with_the_right_colours(scene_dataset):
    scene, dataset = scene_dataset
    zooms = []
    for seed in range(20):
        sample = dataset[(0, seed)]
        K = sample["intrinsics"].double().numpy()
        depth, valid = sample["depth"].numpy(), sample["depth_valid"].numpy()
        assert valid.mean() > 0.2
        zooms.append(K[0, 0])
        world = unproject(depth, K)[valid] @ scene.R.T
        distance = scene.surface_distance(world)[0] / depth[valid]
        assert np.median(distance) < 3e-3 and np.percentile(distance, 90) < 1e-2, seed
        # The image must show, at each pixel, the colour of the surface that the returned K's ray hits there.
        # Compared where a pixel covers well under the texture period (0.5 m), where resampling is accurate.
        rgb = to_rgb(sample["image"].numpy())
        errors = {}
        for shift in (0.0, 1.0):  # one pixel off in cx must be clearly visible
            shifted = K.copy()
            shifted[0, 2] += shift
            rendered_depth, points = scene.raycast(shifted, 98, 70)
            sharp = valid & (rendered_depth / min(K[0, 0], dataset.entries[0].intrinsics[0, 0]) < 0.04)
            errors[shift] = np.median(np.abs(rgb[sharp] - scene.color_at(points[sharp]) * 255).mean(-1))
        assert errors[0.0] < 4.0, seed
        assert errors[1.0] > 1.5 * errors[0.0], seed
    assert max(zooms) / min(zooms) > 1.8, "the zoom must vary the focal length"


def test_zoom_out_pads_with_invalid_pixels_and_keeps_metric_depth():
    rng = np.random.default_rng(0)
    scene = Scene.random(rng)
    K = random_intrinsics(rng, 140, 112, (50, 60))
    rgb, depth = scene.render(K, 140, 112)
    view = train_view(rgb, depth, K, (112, 140), zoom=0.6, flip=False, rng=rng, jitter=False)
    assert not view["image_valid"].all()
    assert (view["depth"][~view["image_valid"]] == 0).all()
    np.testing.assert_allclose(view["K"][0, 0], 0.6 * K[0, 0], rtol=1e-12)
    padded = ~view["image_valid"]
    far_from_image = cv2.erode(padded.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
    np.testing.assert_allclose(view["image"][:, far_from_image], 0.0, atol=0.02)  # padding normalizes to ~0
    rendered, _ = scene.raycast(view["K"], 140, 112)
    inside = view["depth"] > 0
    relative = np.abs(view["depth"][inside] - rendered[inside]) / rendered[inside]
    assert np.median(relative) < 5e-3 and np.percentile(relative, 95) < 0.03  # nearest resampling at edges


def test_flip_mirrors_pixels_and_moves_only_cx():
    rng_a, rng_b = np.random.default_rng(3), np.random.default_rng(3)
    rgb = np.random.default_rng(0).integers(0, 255, (84, 112, 3), dtype=np.uint8)
    depth = np.random.default_rng(1).uniform(1, 5, (84, 112)).astype(np.float32)
    K = np.array([[90.0, 0, 50.0], [0, 95.0, 40.0], [0, 0, 1]])
    plain = train_view(rgb, depth, K, (70, 98), 1.3, False, rng_a, jitter=False)
    flipped = train_view(rgb, depth, K, (70, 98), 1.3, True, rng_b, jitter=False)
    np.testing.assert_array_equal(flipped["image"], plain["image"][:, :, ::-1])
    np.testing.assert_array_equal(flipped["depth"], plain["depth"][:, ::-1])
    np.testing.assert_allclose(flipped["K"], flip_intrinsics(plain["K"], 98))
    assert flipped["K"][1, 2] == plain["K"][1, 2] and flipped["K"][0, 2] == pytest.approx(97 - plain["K"][0, 2])


@pytest.mark.parametrize("zoom", [0.7, 1.0, 1.9])
def test_train_affine_maps_pixel_centres_like_k(zoom):
    """A 3-D point projects with the returned K exactly where the affine moved its source pixel."""
    K = np.array([[120.0, 0, 61.3], [0, 118.0, 44.7], [0, 0, 1]])
    affine = sample_train_affine(90, 120, (70, 98), zoom, np.random.default_rng(7))
    from depth_anything_v2.geometry import affine_intrinsics

    K_out = affine_intrinsics(K, affine.ax, affine.bx, affine.ay, affine.by)
    points = np.random.default_rng(0).uniform([-2, -1, 2], [2, 1, 8], (50, 3))
    uv = (points @ K.T)[:, :2] / points[:, 2:]
    uv_out = (points @ K_out.T)[:, :2] / points[:, 2:]
    np.testing.assert_allclose(uv_out[:, 0], affine.ax * uv[:, 0] + affine.bx, atol=1e-9)
    np.testing.assert_allclose(uv_out[:, 1], affine.ay * uv[:, 1] + affine.by, atol=1e-9)


def test_resize_and_crop_helpers_follow_pixel_edges():
    K = np.array([[100.0, 0, 49.5], [0, 100.0, 39.5], [0, 0, 1]])  # centred in a 100x80 image
    resized = scale_intrinsics(K, 2.0, 2.0)
    assert resized[0, 2] == pytest.approx(99.5) and resized[1, 2] == pytest.approx(79.5)  # still centred at 200x160
    cropped = crop_intrinsics(K, 10, 5)
    assert cropped[0, 2] == pytest.approx(39.5) and cropped[1, 2] == pytest.approx(34.5)


def test_validation_view_keeps_aspect_multiple_of_14_and_updates_k():
    rgb = np.zeros((120, 160, 3), dtype=np.uint8)
    K = np.array([[100.0, 0, 79.5], [0, 100.0, 59.5], [0, 0, 1]])
    image, K_net = val_view(rgb, K, 70)
    assert image.shape == (3, 70, 98)
    np.testing.assert_allclose(K_net, scale_intrinsics(K, 98 / 160, 70 / 120))


@pytest.mark.parametrize("zoom", [0.5, 0.8, 1.0, 1.7])
def test_warp_maps_pixel_centres_exactly_including_the_area_preshrink(zoom):
    """On a linear ramp image, every output pixel holds the source coordinate the affine says it comes from
    (bilinear and k x k area averaging are exact on linear functions)."""
    H, W = 240, 321
    u, v = np.meshgrid(np.arange(W, dtype=np.float32), np.arange(H, dtype=np.float32))
    ramp = np.stack([u, v, np.zeros_like(u)], axis=-1)
    affine = sample_train_affine(H, W, (70, 98), zoom, np.random.default_rng(1))
    out, _, image_valid, _ = warp_view(ramp, np.ones((H, W), np.float32), affine)
    inner = cv2.erode(image_valid.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
    src_u = (np.arange(98) - affine.bx) / affine.ax
    src_v = (np.arange(70) - affine.by) / affine.ay
    np.testing.assert_allclose(out[..., 0][inner], np.broadcast_to(src_u[None, :], (70, 98))[inner], atol=1e-3)
    np.testing.assert_allclose(out[..., 1][inner], np.broadcast_to(src_v[:, None], (70, 98))[inner], atol=1e-3)


def test_normalization_table_and_jitter_leave_padding_at_zero():
    rgb = np.random.default_rng(0).integers(0, 256, (14, 28, 3), dtype=np.uint8)
    expected = (np.clip(1.2 * rgb.astype(np.float64) - 10, 0, 255) / 255 - IMAGENET_MEAN) / IMAGENET_STD
    np.testing.assert_allclose(normalize_image(rgb, 1.2, -10), expected.transpose(2, 0, 1), atol=1e-5)
    gray = np.repeat(rgb[..., :1], 3, axis=2)  # saturation leaves grey pixels grey
    jittered = jitter_normalize(gray, np.random.default_rng(1))
    np.testing.assert_allclose(*(to_rgb(jittered)[..., c] for c in (0, 1)), atol=1.5)
    depth = np.full((84, 112), 3.0, np.float32)
    K = np.array([[90.0, 0, 55.5], [0, 90.0, 41.5], [0, 0, 1]])
    big = rgb.repeat(6, 0).repeat(4, 1)
    views = [train_view(big, depth, K, (70, 98), 0.6, True, np.random.default_rng(2), jitter=j) for j in (False, True)]
    np.testing.assert_array_equal(views[0]["K"], views[1]["K"])
    np.testing.assert_array_equal(views[0]["depth"], views[1]["depth"])
    assert not np.allclose(views[0]["image"], views[1]["image"], atol=0.05)
    rows, cols = views[0]["image_valid"].any(axis=1), views[0]["image_valid"].any(axis=0)
    assert (~rows).any() and (~cols).any()
    for view in views:
        assert (view["image"][:, ~rows] == 0).all() and (view["image"][:, :, ~cols] == 0).all()
