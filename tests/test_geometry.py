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
