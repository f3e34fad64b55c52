"""--depth-scale values: numbers and fractions (as the README writes them), clear errors otherwise."""

from __future__ import annotations

import argparse

import pytest

import train
from dataset.units import COMMON_DEPTH_SCALES, format_depth_scale, parse_depth_scale


@pytest.mark.parametrize("text, value", [("1/256", 1 / 256), ("0.001", 1e-3), ("1e-3", 1e-3), (" 1 / 5000 ", 2e-4),
                                         ("1", 1.0), ("2.5", 2.5)])  # fmt: skip
def test_numbers_and_fractions(text, value):
    assert parse_depth_scale(text) == pytest.approx(value, rel=1e-12)


@pytest.mark.parametrize("text", ["0", "-1", "1/0", "nan", "inf", "abc", "1/x", ""])
def test_bad_values_say_what_is_accepted(text):
    with pytest.raises(argparse.ArgumentTypeError, match=r"not a positive number or fraction.*1/256 for KITTI"):
        parse_depth_scale(text)


def test_train_py_accepts_the_readme_spelling(capsys):
    parser = train.get_args_parser()
    args = parser.parse_args(["--dataset", "d", "--save-path", "s", "--depth-scale", "1/256"])
    assert args.depth_scale == 1 / 256
    with pytest.raises(SystemExit):
        parser.parse_args(["--dataset", "d", "--save-path", "s", "--depth-scale", "1/0"])
    assert "argument --depth-scale: '1/0' is not a positive number or fraction" in capsys.readouterr().err


def test_common_scales_parse_to_their_values():
    assert all(parse_depth_scale(spelling) == value for spelling, value, _ in COMMON_DEPTH_SCALES)


def test_scales_are_written_back_as_users_write_them():
    assert [format_depth_scale(s) for s in (1 / 256, 1e-3, 1 / 5000, 1.0, 2.5, 0.3)] == [
        "1/256", "1/1000", "1/5000", "1", "2.5", "0.3"
    ]  # fmt: skip
