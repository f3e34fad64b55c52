"""train.py on bad data: the start-up data check stops before the model is built, with the likely fix; a sample
that fails in a DataLoader worker stops the run with its one line, written to train.log."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import train_args, write_run_data

import train
from dataset.synthetic import write_synthetic_dataset


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
