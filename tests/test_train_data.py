"""train.py on bad data: the start-up data check stops before the model is built, with the likely fix, for both
lists at once (and for a validation list equal to the training one, or K of an image of another size); a sample
that fails in a DataLoader worker stops the run with its one line, written to train.log."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import train_args, write_run_data

import train
from dataset.synthetic import write_synthetic_dataset
from depth_anything_v2.geometry import scale_intrinsics


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return write_run_data(tmp_path_factory.mktemp("train_data"), 4, 1, (84, 70), seed=3)


def test_millimetre_depth_stops_before_the_model_is_built(data, tmp_path, monkeypatch):
    scenes = tmp_path / "mm"
    write_synthetic_dataset(scenes, n_train=2, n_val=1, size=(84, 70), seed=4)
    for path in (scenes / "depths").glob("*.npy"):
        np.save(path, np.load(path) * 1000)  # millimetres
    monkeypatch.setattr(train, "build_model", lambda *a: pytest.fail("the model was built before the data check"))
    argv = train_args(data, tmp_path / "run")
    argv[argv.index("--dataset") + 1] = str(scenes)
    with pytest.raises(SystemExit, match=r"(?s)validation data: all of the 1 depth maps.*fix: --depth-scale 0.001"):
        train.main(train.get_args_parser().parse_args(argv))
    assert not (tmp_path / "run").exists()  # a refusal at start writes nothing into the run folder


def test_a_sample_failing_in_a_worker_stops_with_its_line_in_train_log(data, tmp_path):
    scenes = tmp_path / "scenes"
    write_synthetic_dataset(scenes, n_train=2, n_val=1, size=(84, 70), seed=5)
    lines = (scenes / "splits" / "train.txt").read_text().splitlines()
    image = scenes / lines[1].split()[0]
    image.write_bytes(image.read_bytes()[:120])  # the header passes the start-up check, the pixels are cut
    argv = train_args(data, tmp_path / "run", "--workers", "1", "--bs", "1", "--max-steps", "2", "--zoom-factor", "1")
    argv[argv.index("--dataset") + 1] = str(scenes)
    expected = f"{scenes / 'splits' / 'train.txt'}:2: {image}: cannot read image (missing, corrupt or unsupported)"
    with pytest.raises(SystemExit) as exit_info:
        train.main(train.get_args_parser().parse_args(argv))
    assert str(exit_info.value) == f"data: {expected}"
    log = (tmp_path / "run" / "train.log").read_text()
    assert log.count(expected) == 1 and f"ERROR data: {expected}\n" in log
    assert "Traceback" not in log and "DataLoader worker" not in log


def no_model(*args):
    pytest.fail("the model was built before the data check")


def fresh_scenes(tmp_path):
    """Synthetic scenes, 3 training and 2 validation, in tmp_path/scenes."""
    write_synthetic_dataset(tmp_path / "scenes", n_train=3, n_val=2, size=(84, 70), seed=6)
    return tmp_path / "scenes"


def train_on(data, scenes, save_path, *extra):
    argv = train_args(data, save_path, *extra)
    argv[argv.index("--dataset") + 1] = str(scenes)
    train.main(train.get_args_parser().parse_args(argv))


def test_bad_lines_of_both_lists_stop_the_run_in_one_message(data, tmp_path, monkeypatch):
    """Issue 27: with bad lines in val.txt and train.txt, only val's were reported."""
    scenes = fresh_scenes(tmp_path)
    for name, bad in (("val", "missing_val.png missing.npy"), ("train", "only_one_field")):
        listed = scenes / "splits" / f"{name}.txt"
        listed.write_text(listed.read_text() + bad + "\n")
    monkeypatch.setattr(train, "build_model", no_model)
    with pytest.raises(SystemExit) as exit_info:
        train_on(data, scenes, tmp_path / "run")
    message = str(exit_info.value)
    assert f"validation data: 1 bad line(s) in {scenes / 'splits' / 'val.txt'}:\n  " in message
    assert f"{scenes / 'splits' / 'val.txt'}:3: missing_val.png: file not found" in message
    assert f"\ntraining data: 1 bad line(s) in {scenes / 'splits' / 'train.txt'}:\n  " in message
    assert f"{scenes / 'splits' / 'train.txt'}:4: expected 'image depth [intrinsics]'" in message


def test_a_validation_list_equal_to_the_training_list_is_refused(data, tmp_path, monkeypatch):
    """Issue 27: the guide's snippet made train.txt = val.txt, which trained and 'validated' silently."""
    scenes = fresh_scenes(tmp_path)
    (scenes / "splits" / "val.txt").write_text((scenes / "splits" / "train.txt").read_text())
    monkeypatch.setattr(train, "build_model", no_model)
    with pytest.raises(SystemExit, match=r"^data: the training list .*train.txt and the validation list .*val.txt"):
        train_on(data, scenes, tmp_path / "run")


def test_K_of_the_double_size_image_is_refused_unless_the_offcentre_flag_is_given(data, tmp_path, monkeypatch):
    """Issue 27: K of the 2x image for a frame passed the training list's check (1.25x the side was allowed)."""
    scenes = fresh_scenes(tmp_path)
    K_path = scenes / (scenes / "splits" / "train.txt").read_text().splitlines()[1].split()[2]
    np.save(K_path, scale_intrinsics(np.load(K_path), 2.0, 2.0))
    monkeypatch.setattr(train, "build_model", no_model)
    with pytest.raises(SystemExit) as exit_info:
        train_on(data, scenes, tmp_path / "run")
    message = str(exit_info.value)
    assert f"train.txt:2: {K_path}: cx=" in message and "is K for an image of another size" in message
    assert "pass --allow-offcentre-principal-point" in message

    def built(*args):
        raise RuntimeError("model built")

    monkeypatch.setattr(train, "build_model", built)
    with pytest.raises(RuntimeError, match="model built"):  # the data check passed
        train_on(data, scenes, tmp_path / "run2", "--allow-offcentre-principal-point")
