"""Mixture specs (dataset/mixture.py): the command-line and TOML forms, labels, per-dataset settings, bad specs."""

from __future__ import annotations

import pytest

from dataset.mixture import (
    TOML_KEYS,
    MixtureError,
    mixture_differences,
    mixture_record,
    parse_mixture,
)
from dataset.mixture_dataset import MixtureDataset
from dataset.synthetic import write_synthetic_dataset


@pytest.fixture
def folders(tmp_path, monkeypatch):
    for name in ("rig", "phone", "nyu_root"):
        (tmp_path / name).mkdir()
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_command_line_form_with_weights_labels_and_a_named_dataset(folders):
    specs = parse_mixture("rig:2, phone,nyu:0.5", data_root="nyu_root")
    assert [(s.label, s.weight) for s in specs] == [("rig", 2.0), ("phone", 1.0), ("nyu", 0.5)]
    assert specs[0].source == str(folders / "rig") and not specs[0].named
    assert specs[2].named and specs[2].data_root == str(folders / "nyu_root")
    assert [s.label for s in parse_mixture(str(folders / "rig"))] == ["rig"]  # a single dataset: a mixture of one


def test_toml_form_with_per_dataset_settings(folders):
    (folders / "conf").mkdir()
    toml = folders / "conf" / "mix.toml"
    toml.write_text(
        '[[dataset]]\npath = "../rig"\nweight = 3\ndepth_scale = 0.001\nmax_depth = 8\n'
        'eval = {crop = "eigen_nyu", max_depth = 6}\n\n'
        '[[dataset]]\npath = "../phone"\nlabel = "my-phone"\ndepth_scale = "1/256"\neval = "garg"\n\n'
        '[[dataset]]\nname = "nyu"\ndata_root = "../nyu_root"\n'
    )
    rig, phone, nyu = parse_mixture(str(toml))
    assert (rig.label, rig.source, rig.weight, rig.depth_scale, rig.max_depth) == ("rig", str(folders / "rig"), 3.0,
                                                                                     0.001, 8.0)  # fmt: skip
    assert (rig.eval_crop, rig.eval_min_depth, rig.eval_max_depth) == ("eigen_nyu", None, 6.0)
    assert (phone.label, phone.depth_scale, phone.eval_crop, phone.min_depth) == ("my-phone", 1 / 256, "garg", None)
    assert nyu.named and nyu.data_root == str(folders / "nyu_root") and nyu.label == "nyu"
    assert [r["label"] for r in mixture_record([rig, phone, nyu])] == ["rig", "my-phone", "nyu"]


BAD_LISTS = {
    "rig:0": "weight '0' must be a positive number",
    "rig:-1": "weight '-1' must be a positive number",
    "rig:two": "weight 'two' is not a number",
    "rig:nan": "weight 'nan' must be a positive number",
    "nowhere:1": "'nowhere' is not a folder",
    "rig,rig:2": "two datasets are labelled 'rig'",
    "": "an empty mixture",
    " , ": "an empty mixture",
    "rig,,phone": "an empty entry between commas",
    "nyu": "nyu is a named dataset and needs its data root",
    "mean_dir": "label 'mean' of",
}

BAD_TOMLS = {
    '[[dataset]]\npath = "rig"\nwieght = 2\n': "unknown key 'wieght'; the known keys are " + ", ".join(TOML_KEYS),
    '[[dataset]]\npath = "rig"\nweight = 0\n': "weight 0 must be a positive number",
    '[[dataset]]\npath = "rig"\nweight = "a lot"\n': "weight 'a lot' is not a number",
    '[[dataset]]\npath = "rig"\nweight = true\n': "weight True is not a number",
    '[[dataset]]\npath = "gone"\n': "'gone' is not a folder",
    '[[dataset]]\nname = "rig"\n': "'rig' is not a named dataset",
    '[[dataset]]\npath = "rig"\n[[dataset]]\npath = "rig"\n': "two datasets are labelled 'rig'",
    '[[dataset]]\npath = "rig"\n[[dataset]]\npath = "phone"\nlabel = "rig"\n': "two datasets are labelled 'rig'",
    "": "an empty mixture",
    "[mixture]\nseed = 1\n": "unknown top-level key 'mixture'",
    '[[dataset]]\npath = "rig"\nname = "nyu"\n': "exactly one of `path`",
    '[[dataset]]\nname = "nyu"\ndata_root = "nyu_root"\ndepth_scale = 0.001\n': "decodes its own depth units",
    '[[dataset]]\npath = "rig"\ndata_root = "nyu_root"\n': "`data_root` is for named datasets",
    '[[dataset]]\npath = "rig"\ndepth_scale = "mm"\n': "'mm' is not a positive number or fraction",
    '[[dataset]]\npath = "rig"\nmin_depth = 5\nmax_depth = 2\n': "min_depth 5 m is not below max_depth 2 m",
    '[[dataset]]\npath = "rig"\neval = "kitti"\n': "eval crop 'kitti' is not one of",
    '[[dataset]]\npath = "rig"\neval = {crop = "garg", top = 1}\n': "unknown eval key 'top'",
    '[[dataset]]\npath = "rig"\nlabel = "a/b"\n': "label 'a/b'",
    '[[dataset]\npath = "rig"\n': "not valid TOML",
}


@pytest.mark.parametrize("text", BAD_LISTS)
def test_a_bad_command_line_spec_is_one_line_naming_the_problem(folders, text):
    (folders / "mean_dir").mkdir()
    if text == "mean_dir":
        (folders / "mean_dir").rename(folders / "mean")
        text = "mean"
    with pytest.raises(MixtureError) as err:
        parse_mixture(text)
    assert BAD_LISTS["mean_dir" if text == "mean" else text] in str(err.value)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("content", BAD_TOMLS)
def test_a_bad_toml_spec_is_one_line_naming_the_problem(folders, content):
    toml = folders / "mix.toml"
    toml.write_text(content)
    with pytest.raises(MixtureError) as err:
        parse_mixture(str(toml))
    assert BAD_TOMLS[content] in str(err.value)
    assert "\n" not in str(err.value) and str(toml) in str(err.value)


def test_a_missing_toml_file_is_named(folders):
    with pytest.raises(MixtureError, match="no such TOML file"):
        parse_mixture("missing.toml")


def test_differences_name_new_missing_and_changed_datasets(folders):
    before = mixture_record(parse_mixture("rig:1,phone:1"))
    assert mixture_differences(before, before) == []
    (folders / "cam").mkdir()
    after = mixture_record(parse_mixture("rig:2,cam"))
    assert mixture_differences(before, after) == ["new dataset 'cam'", "dataset 'phone' missing",
                                                  "weight of 'rig' 1 -> 2"]  # fmt: skip


def test_mixture_dataset_indexes_its_datasets_in_order(tmp_path):
    from dataset import GenericDatasetWithIntrinsics

    sets = {}
    for name, n in (("a", 3), ("b", 2)):
        root = write_synthetic_dataset(tmp_path / name, n, 1, (42, 28), seed=len(name))
        sets[name] = GenericDatasetWithIntrinsics(root / "splits" / "train.txt", size=(28, 28))
    mixed = MixtureDataset(sets)
    assert len(mixed) == 5 and mixed.locate(3) == (1, 0) and mixed.locate(2) == (0, 2)
    sample = mixed[(4, 7)]
    assert sample["source"] == 1 and sample["index"] == 1 and "b/images" in sample["image_path"]
    with pytest.raises(IndexError):
        mixed.locate(5)
