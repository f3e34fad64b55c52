"""The file-list tool: pairing by stem, unpaired files reported, reproducible splits that the dataset loads."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from dataset import GenericDatasetWithIntrinsics
from dataset.make_filelist import files_by_stem, main, make_filelists


@pytest.fixture
def raw(tmp_path):
    """8 paired frames (6 with intrinsics), one image without depth, one depth without image, one stray K."""
    for sub in ("images", "depths", "intrinsics"):
        (tmp_path / sub).mkdir()
    K = np.array([[60.0, 0, 34.5], [0, 60.0, 27.5], [0, 0, 1]])
    for i in range(9):
        cv2.imwrite(str(tmp_path / "images" / f"f{i}.jpg"), np.full((56, 70, 3), 20 * i, np.uint8))
    for i in list(range(8)) + [42]:
        cv2.imwrite(str(tmp_path / "depths" / f"f{i}.png"), np.full((56, 70), 1000 + i, np.uint16))
    for i in list(range(6)) + [99]:
        np.save(tmp_path / "intrinsics" / f"f{i}.npy", K)
    (tmp_path / "images" / "notes.txt").write_text("not an image")
    return tmp_path


def test_pairs_by_stem_and_reports_unpaired(raw):
    out = raw / "splits"
    result = make_filelists(raw / "images", raw / "depths", out, raw / "intrinsics", val_fraction=0.25, seed=0)
    assert len(result["train"]) == 6 and len(result["val"]) == 2
    assert sorted(result["unpaired"]) == sorted(
        str(raw / p) for p in ("images/f8.jpg", "depths/f42.png", "intrinsics/f99.npy")
    )
    lines = result["train"] + result["val"]
    assert sorted(line.split()[0] for line in lines) == [f"../images/f{i}.jpg" for i in range(8)]
    for line in lines:
        stem = line.split()[0][len("../images/") : -len(".jpg")]
        assert line.split()[1] == f"../depths/{stem}.png"
        assert len(line.split()) == (3 if int(stem[1:]) < 6 else 2)  # intrinsics only where a file exists
    assert (out / "train.txt").read_text().splitlines() == result["train"]
    dataset = GenericDatasetWithIntrinsics(out / "train.txt", mode="val", size=(56, 56), depth_scale=1e-3)
    assert len(dataset) == 6
    sample = dataset[0]
    assert sample["depth"].shape == (56, 70) and 1.0 <= float(sample["depth"][0, 0]) < 1.01


def test_split_is_reproducible_and_seeded(raw):
    first = make_filelists(raw / "images", raw / "depths", raw / "a", val_fraction=0.5, seed=1)
    again = make_filelists(raw / "images", raw / "depths", raw / "b", val_fraction=0.5, seed=1)
    others = [make_filelists(raw / "images", raw / "depths", raw / f"s{s}", val_fraction=0.5, seed=s) for s in (2, 3)]
    assert first["val"] == again["val"] and len(first["val"]) == 4
    assert any(other["val"] != first["val"] for other in others)
    assert sorted(first["train"] + first["val"]) == sorted(others[0]["train"] + others[0]["val"])


def test_duplicate_stem_and_missing_folder_are_errors(raw):
    cv2.imwrite(str(raw / "images" / "f1.png"), np.zeros((4, 4, 3), np.uint8))
    with pytest.raises(SystemExit, match="two files share the stem 'f1': f1.jpg, f1.png"):
        files_by_stem(raw / "images", (".jpg", ".png"))
    with pytest.raises(SystemExit, match="nowhere: folder not found"):
        files_by_stem(raw / "nowhere", (".npy",))


def test_cli_reports_counts_and_unpaired_files(raw, capsys):
    main(["--images", str(raw / "images"), "--depths", str(raw / "depths"), "--out", str(raw / "cli")])
    printed = capsys.readouterr().out
    assert "wrote 7 train and 1 val lines" in printed
    assert "2 unpaired files" in printed and "f8.jpg" in printed and "f42.png" in printed
