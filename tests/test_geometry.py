"""geometry.intrinsics_problem: a plausible pinhole K for an image passes, the usual mistakes are named."""

from __future__ import annotations

import re

import pytest

from depth_anything_v2.geometry import intrinsics_problem, make_intrinsics


@pytest.mark.parametrize(
    "K, width, height",
    [
        (make_intrinsics(518.86, 519.47, 325.58, 253.74), 640, 480),  # NYU
        (make_intrinsics(721.54, 721.54, 609.56, 172.85), 1242, 375),  # KITTI: wide, short image
        (make_intrinsics(1266.4, 1266.4, 416.3, 161.5), 800, 450),  # a crop: principal point off centre
        (make_intrinsics(20.0, 20.0, 31.5, 23.5), 64, 48),  # a wide field of view (116 degrees)
    ],
)
def test_plausible_intrinsics_pass(K, width, height):
    assert intrinsics_problem(K, width, height) is None


@pytest.mark.parametrize(
    "K, message",
    [
        (make_intrinsics(3.9, 3.9, 2.8, 2.1), "fx=3.9 px is implausibly small .* is K in millimetres"),
        (make_intrinsics(0.9, 1.2, 0.5, 0.5), "look normalised .*multiply fx and cx by the width 640"),
        (make_intrinsics(1000, 1000, 3000, 3000), "cx=3000 lies far outside the image"),
        (make_intrinsics(1e6, 1e6, 319.5, 239.5), "implausibly large"),
        (make_intrinsics(500, 1500, 319.5, 239.5), "differ by more than 2x"),
        ([[500, 1.5, 319.5], [0, 500, 239.5], [0, 0, 1]], "skew or shear"),
        ([[500, 0, 319.5], [0, -500, 239.5], [0, 0, 1]], "focal lengths must be positive"),
        ([[500, 0, 319.5], [0, 500, 239.5]], "3x3"),
    ],
)
def test_the_usual_mistakes_are_named(K, message):
    problem = intrinsics_problem(K, 640, 480)
    assert problem is not None and re.search(message, problem), problem


@pytest.mark.parametrize(
    "K, message",
    [
        (make_intrinsics(1037.7, 1038.9, 651.7, 508.0), "cx=651.7 lies outside the image (640 px across)"),  # NYU 2x
        (make_intrinsics(778.3, 779.2, 488.6, 380.9), "cx=488.6 lies 26% of the image's 640 px from its centre"),
        (make_intrinsics(259.4, 259.7, 162.5, 126.6), "cx=162.5 lies 25% of the image's 640 px from its centre"),
    ],
)
def test_K_of_an_image_of_another_size_is_refused_unless_allowed(K, message):
    """Issue 27: K of the 2x (or 1.5x, or half) image passed, because 1.25x the side was allowed for crops."""
    problem = intrinsics_problem(K, 640, 480)
    assert problem is not None and message in problem, problem
    assert "is K for an image of another size" in problem and "pass --allow-offcentre-principal-point" in problem
    assert intrinsics_problem(K, 640, 480, allow_offcentre=True) is None
    assert "use the web page" in intrinsics_problem(K, 640, 480, offcentre_fix="use the web page")


def test_the_offcentre_bound_and_what_the_flag_still_refuses():
    assert intrinsics_problem(make_intrinsics(500, 500, 319.5 + 0.2 * 640, 239.5 - 0.2 * 480), 640, 480) is None
    assert intrinsics_problem(make_intrinsics(500, 500, 319.5 + 0.21 * 640, 239.5), 640, 480) is not None
    crop = make_intrinsics(721.5, 721.5, 609.6, -30.0)  # KITTI, the top 200 rows cut off: cy above the image
    assert "cy=-30 lies outside the image" in intrinsics_problem(crop, 1242, 175)
    assert intrinsics_problem(crop, 1242, 175, allow_offcentre=True) is None
    problem = intrinsics_problem(make_intrinsics(500, 500, 900.0, 239.5), 640, 480, allow_offcentre=True)
    assert "cx=900 lies far outside the image" in problem and "Even for a crop, at most 25%" in problem
