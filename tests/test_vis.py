"""util/vis.py: the embedded Spectral colour map, colorize's conventions and the side-by-side panel."""

from __future__ import annotations

import numpy as np
import pytest

from util.vis import SPECTRAL_RGB, colorize, side_by_side


def _rgb(hex_colour: str) -> list[int]:
    return [int(hex_colour[i : i + 2], 16) for i in (0, 2, 4)]


def test_spectral_lut_passes_through_the_colorbrewer_anchors():
    assert SPECTRAL_RGB.shape == (256, 3) and SPECTRAL_RGB.dtype == np.uint8
    # Anchor k of 11 sits at k/10 of the ramp; for even k that is exactly entry 25.5 k.
    for k, hex_colour in [(0, "9e0142"), (2, "f46d43"), (4, "fee08b"), (6, "e6f598"), (8, "66c2a5"), (10, "5e4fa2")]:
        assert SPECTRAL_RGB[int(25.5 * k)].tolist() == _rgb(hex_colour)
    # Between anchors 5 (ffffbf, at 0.5) and 6 (e6f598, at 0.6) the ramp is linear.
    frac = (140 / 255 - 0.5) / 0.1
    expected = (1 - frac) * np.array(_rgb("ffffbf")) + frac * np.array(_rgb("e6f598"))
    np.testing.assert_allclose(SPECTRAL_RGB[140], expected, atol=0.5)


def test_colorize_low_end_red_and_reverse_flips_it():
    values = np.array([[1.0, 2.0, 3.0]])
    out = colorize(values)
    assert out.shape == (1, 3, 3) and out.dtype == np.uint8
    assert out[0, 0].tolist() == _rgb("9e0142")[::-1]  # BGR
    assert out[0, 2].tolist() == _rgb("5e4fa2")[::-1]
    reversed_out = colorize(values, reverse=True)
    assert reversed_out[0, 0].tolist() == _rgb("5e4fa2")[::-1]
    assert reversed_out[0, 2].tolist() == _rgb("9e0142")[::-1]


def test_colorize_explicit_range_clips_and_is_not_per_image():
    values = np.array([[-5.0, 0.0, 10.0, 20.0]])
    out = colorize(values, vmin=0.0, vmax=10.0)
    assert out[0, 0].tolist() == out[0, 1].tolist() == _rgb("9e0142")[::-1]
    assert out[0, 2].tolist() == out[0, 3].tolist() == _rgb("5e4fa2")[::-1]
    # The same value gets the same colour in two images when the range is fixed.
    assert (
        colorize(np.array([[5.0, 0.0]]), 0.0, 10.0)[0, 0].tolist()
        == colorize(np.array([[5.0]]), 0.0, 10.0)[0, 0].tolist()
    )


def test_colorize_grayscale_red_end_is_white_and_nonfinite_black():
    values = np.array([[1.0, 2.0, np.nan, np.inf]])
    grey = colorize(values, grayscale=True)
    assert grey[0, 0].tolist() == [255, 255, 255]
    assert grey[0, 1].tolist() == [0, 0, 0]
    assert grey[0, 2].tolist() == [0, 0, 0] and grey[0, 3].tolist() == [0, 0, 0]
    assert colorize(values, reverse=True, grayscale=True)[0, 1].tolist() == [255, 255, 255]
    assert colorize(np.full((2, 2), np.nan)).max() == 0
    assert colorize(np.full((2, 2), 4.0)).reshape(-1, 3).tolist() == [_rgb("9e0142")[::-1]] * 4


def test_colorize_rejects_non_2d():
    with pytest.raises(ValueError, match="shape"):
        colorize(np.zeros((2, 2, 3)))


def test_side_by_side_layout():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (7, 5, 3), dtype=np.uint8)
    depth = rng.integers(0, 256, (7, 5, 3), dtype=np.uint8)
    panel = side_by_side(image, depth, gap=4)
    assert panel.shape == (7, 14, 3) and panel.dtype == np.uint8
    np.testing.assert_array_equal(panel[:, :5], image)
    assert (panel[:, 5:9] == 255).all()
    np.testing.assert_array_equal(panel[:, 9:], depth)
    assert side_by_side(image, depth).shape == (7, 60, 3)
    with pytest.raises(ValueError, match="one size"):
        side_by_side(image, depth[:, :4])
