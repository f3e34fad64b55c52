"""The start-up data check: wrong depth units and ranges stop with the numbers and the fix, sizes are compared
from the headers (swapped ones name EXIF), bad lines are listed or skipped, a long list is sampled; one map in
another unit is named, disparity saved as depth is warned about, and a validation list equal to the training list
is refused."""

from __future__ import annotations

import logging

import cv2
import numpy as np
import pytest
from helpers import write_oriented_image

from dataset import DataError, GenericDatasetWithIntrinsics
from dataset.check import MAX_VALUE_CHECKS, check_dataset, check_splits, maps_to_read
from dataset.units import likely_fixes, nice_max_depth

RNG = np.random.default_rng(0)
# Metric depth of an outdoor LiDAR frame: 20 % of the pixels measured, 5-85 m.
OUTDOOR_M = np.where(RNG.random((24, 40)) < 0.2, RNG.uniform(5, 85, (24, 40)), 0).astype(np.float32)


def write_samples(folder, depths, suffix=".npy", image_size=(40, 24)):
    """One image per depth map (.npy as given, .png as uint16) and a list of `image depth` lines."""
    folder.mkdir(parents=True, exist_ok=True)
    lines = []
    for i, depth in enumerate(depths):
        cv2.imwrite(str(folder / f"i{i}.png"), np.full((image_size[1], image_size[0], 3), 90, np.uint8))
        if suffix == ".png":
            cv2.imwrite(str(folder / f"d{i}.png"), depth.astype(np.uint16))
        else:
            np.save(folder / f"d{i}.npy", depth)
        lines.append(f"i{i}.png d{i}{suffix}")
    (folder / "list.txt").write_text("\n".join(lines) + "\n")
    return folder / "list.txt"


def dataset(listed, **options):
    return GenericDatasetWithIntrinsics(listed, mode="val", size=(14, 14), **options)


def test_kitti_pngs_without_depth_scale_stop_with_the_scale_that_fits(tmp_path):
    listed = write_samples(tmp_path, [OUTDOOR_M * 256] * 3, ".png")
    with pytest.raises(DataError) as err:
        check_dataset(dataset(listed, max_depth=80.0))
    message = str(err.value)
    assert "all of the 3 depth maps" in message and "--depth-scale 1: 0% of the measured pixels lie inside" in message
    assert "100% above" in message and "implausible depth" in message
    assert "likely fix: --depth-scale 1/256 (16-bit PNG in 1/256 m, e.g. KITTI)" in message
    summary = check_dataset(dataset(listed, max_depth=90.0, depth_scale=1 / 256))  # the fix works
    assert summary.inside == 1.0 and 5 <= summary.p1 < summary.p50 < summary.p99 <= 85 and summary.measured < 0.3


def test_millimetre_npy_suggests_0001_first(tmp_path):
    indoor_mm = np.where(RNG.random((24, 40)) < 0.7, RNG.uniform(700, 8000, (24, 40)), 0).astype(np.float32)
    with pytest.raises(DataError, match=r"likely fix: --depth-scale 0.001 \(millimetres"):
        check_dataset(dataset(write_samples(tmp_path, [indoor_mm] * 2), max_depth=20.0))


def test_all_zero_depth_is_an_error(tmp_path):
    with pytest.raises(DataError, match="no measured depth at all, every value is 0"):
        check_dataset(dataset(write_samples(tmp_path, [np.zeros((24, 40), np.float32)] * 2), max_depth=20.0))


def test_metric_depth_beyond_max_depth_suggests_a_range_or_warns(tmp_path, caplog):
    listed = write_samples(tmp_path, [OUTDOOR_M] * 2)
    with pytest.raises(DataError, match=r"likely fix: --max-depth 100: "):  # most of 5-85 m is beyond 10 m
        check_dataset(dataset(listed, max_depth=10.0))
    with caplog.at_level(logging.WARNING):
        summary = check_dataset(dataset(listed, max_depth=50.0))  # over half inside: a warning, not a stop
    assert 0.5 <= summary.inside < 0.95 and "above --max-depth 50 m and is ignored" in caplog.text
    assert "--max-depth 100?" in caplog.text and nice_max_depth(85) == 100 and nice_max_depth(12) == 20


def test_depth_size_is_checked_from_headers_and_swapped_sizes_name_exif(tmp_path):
    write_oriented_image(tmp_path / "turned.jpg", np.full((24, 40, 3), 90, np.uint8), 6)  # decodes as 24 x 40
    np.save(tmp_path / "turned.npy", np.full((24, 40), 3.0, np.float32))  # the stored pixels' size
    np.save(tmp_path / "small.npy", np.full((10, 10), 3.0, np.float32))
    cv2.imwrite(str(tmp_path / "ok.png"), np.full((24, 40, 3), 90, np.uint8))
    (tmp_path / "list.txt").write_text("turned.jpg turned.npy\nok.png small.npy\nok.png turned.npy\n")
    with pytest.raises(DataError) as err:
        check_dataset(dataset(tmp_path / "list.txt"))
    message = str(err.value)
    assert message.startswith(f"2 bad line(s) in {tmp_path / 'list.txt'}")
    assert (
        f"list.txt:1: {tmp_path / 'turned.npy'}: depth is 40x24 but image {tmp_path / 'turned.jpg'} is 24x40" in message
    )
    assert "EXIF orientation 6 turns it a quarter turn" in message
    assert "list.txt:2: " in message and "depth is 10x10 but image" in message and "list.txt:3" not in message


def test_skip_bad_samples_skips_and_lists_the_lines_found_at_start(tmp_path, caplog):
    listed = write_samples(tmp_path, [OUTDOOR_M] * 2)
    np.save(tmp_path / "small.npy", np.full((10, 10), 3.0, np.float32))
    (tmp_path / "empty.png").write_bytes(b"")
    lines = listed.read_text().splitlines()
    listed.write_text("\n".join([*lines, "i0.png small.npy", "empty.png d0.npy", "i0.png missing.npy"]) + "\n")
    with pytest.raises(DataError, match=r"(?s)2 bad line\(s\).*list.txt:4: .*empty.png: image file is empty"):
        dataset(listed, max_depth=100.0)  # the cheap checks of every line: all listed, nothing skipped
    with caplog.at_level(logging.WARNING):
        skipping = dataset(listed, max_depth=100.0, skip_bad_samples=True)
        check_dataset(skipping)
    assert [e.line for e in skipping.entries] == [1, 2] and len(skipping.skipped_lines) == 3
    for line in ("list.txt:3: ", "list.txt:4: ", "list.txt:5: missing.npy: file not found"):
        assert line in caplog.text


def test_a_long_list_is_checked_on_a_fixed_sample(tmp_path):
    np.save(tmp_path / "d.npy", np.full((24, 40), 3.0, np.float32))
    cv2.imwrite(str(tmp_path / "i.png"), np.full((24, 40, 3), 90, np.uint8))
    (tmp_path / "list.txt").write_text("i.png d.npy\n" * (MAX_VALUE_CHECKS + 50))
    summary = check_dataset(dataset(tmp_path / "list.txt", max_depth=20.0))
    assert (summary.maps, summary.total, summary.p50) == (MAX_VALUE_CHECKS, MAX_VALUE_CHECKS + 50, 3.0)


INDOOR_M = np.where(RNG.random((24, 40)) < 0.7, RNG.uniform(1.0, 6.0, (24, 40)), 0).astype(np.float32)


def test_one_map_in_another_unit_is_named_with_the_units_that_fit(tmp_path):
    """Issue 27: one 16-bit PNG in 1/5000 m among .npy maps in metres trained, masked out, and the message
    suggested --max-depth 13114."""
    listed = write_samples(tmp_path, [INDOOR_M, INDOOR_M * 1.1, INDOOR_M * 0.9, INDOOR_M * 1.2])
    cv2.imwrite(str(tmp_path / "tum.png"), np.round(INDOOR_M * 5000).astype(np.uint16))
    listed.write_text(listed.read_text() + "i0.png tum.png\n")
    with pytest.raises(DataError) as err:
        check_dataset(dataset(listed, max_depth=80.0))
    message = str(err.value)
    assert message.startswith(f"1 bad line(s) in {listed}:\n  {listed}:5: {tmp_path / 'tum.png'}: median depth ")
    median = np.median(INDOOR_M[INDOOR_M > 0])
    assert f"median depth {median * 5000:,.0f} m, where the list's other maps have " in message
    assert f"its median read as 16-bit PNG in 1/5000 m, e.g. TUM RGB-D (1/5000 m) {median:.3g} m, or as " in message
    assert "store this map in the list's unit, or remove the line" in message and "--max-depth" not in message
    skipping = dataset(listed, max_depth=80.0, skip_bad_samples=True)
    summary = check_dataset(skipping)
    assert len(skipping) == 4 and summary.inside == 1.0 and summary.p99 < 10


def test_a_rarer_file_type_is_read_even_outside_the_sample_of_a_long_list(tmp_path):
    np.save(tmp_path / "d.npy", INDOOR_M)
    cv2.imwrite(str(tmp_path / "i.png"), np.full((24, 40, 3), 90, np.uint8))
    cv2.imwrite(str(tmp_path / "mm.png"), np.round(INDOOR_M * 1000).astype(np.uint16))
    lines = ["i.png d.npy"] * (MAX_VALUE_CHECKS + 50)
    unsampled = next(i for i in range(len(lines)) if i not in maps_to_read(dataset_of(tmp_path, lines)))
    lines[unsampled] = "i.png mm.png"
    with pytest.raises(DataError, match=rf"list.txt:{unsampled + 1}: {tmp_path / 'mm.png'}: median depth .*millim"):
        check_dataset(dataset_of(tmp_path, lines, max_depth=20.0))


def dataset_of(folder, lines, **options):
    (folder / "list.txt").write_text("\n".join(lines) + "\n")
    return dataset(folder / "list.txt", **options)


def test_depth_beyond_any_scene_never_suggests_a_max_depth_over_1000_m(tmp_path, caplog):
    marked = INDOOR_M.copy()
    marked[:3] = 65535.0  # a no-depth marker kept as a value: 12 % of every map
    listed = write_samples(tmp_path, [marked] * 3)
    with caplog.at_level(logging.WARNING):
        check_dataset(dataset(listed, max_depth=80.0))
    assert "deeper than any camera scene: are some values in another unit, or a no-depth marker" in caplog.text
    assert "--max-depth 65535" not in caplog.text
    depth = np.concatenate([np.full(800, 100.0), np.full(200, 5000.0)]).astype(np.float32)  # 20 % beyond 1000 m
    fixes = likely_fixes(depth, 1.0, 1e-3, 80.0)
    assert fixes and not any("--max-depth 5000" in fix for fix in fixes), fixes


def test_disparity_or_normalised_depth_saved_as_depth_gets_a_warning(tmp_path, caplog):
    """Issue 27: maps of 0.02-1.07 with --max-depth 80 were taken for metres."""
    disparity = np.where(INDOOR_M > 0, 1.0 / np.maximum(INDOOR_M, 0.93), 0).astype(np.float32)
    listed = write_samples(tmp_path, [disparity, disparity * 0.8])
    with caplog.at_level(logging.WARNING):
        check_dataset(dataset(listed, max_depth=80.0))
    assert "with --max-depth 80 m: the maps look like inverse depth (disparity) or depth normalised" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        check_dataset(dataset(listed, max_depth=2.0))  # a close-range dataset with a range to match: no warning
        check_dataset(dataset(write_samples(tmp_path / "metres", [INDOOR_M] * 2), max_depth=80.0))
    assert "inverse depth" not in caplog.text


def test_identical_training_and_validation_lists_are_refused_and_an_overlap_counted(tmp_path, caplog):
    """Issue 27: train list = val list (the guide's snippet) was accepted silently."""
    listed = write_samples(tmp_path, [INDOOR_M] * 4)
    lines = listed.read_text().splitlines()
    (tmp_path / "val.txt").write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=r"hold the same 4 images: .*--val-fraction"):
        check_splits(dataset(listed), dataset(tmp_path / "val.txt"))
    (tmp_path / "val.txt").write_text("\n".join(lines[2:]) + "\n")
    (tmp_path / "train.txt").write_text("\n".join(lines[1:]) + "\n")
    with caplog.at_level(logging.WARNING):
        check_splits(dataset(tmp_path / "train.txt"), dataset(tmp_path / "val.txt"))
    assert f"2 of the 2 validation images of {tmp_path / 'val.txt'} are also in the training list" in caplog.text
    caplog.clear()
    (tmp_path / "train.txt").write_text("\n".join(lines[:2]) + "\n")
    check_splits(dataset(tmp_path / "train.txt"), dataset(tmp_path / "val.txt"))
    assert not caplog.text
