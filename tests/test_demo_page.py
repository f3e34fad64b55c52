"""What the web demo does behind its page (inference.demo_page, inference.uploads), with a stand-in model whose
depth is the focal length in pixels / 100 m: uploads, resizing with K, checkpoints, loading once, the focal sweep,
readouts."""

from __future__ import annotations

import numpy as np
import pytest
from app_server import write_photo
from PIL import Image

from depth_anything_v2.geometry import canonical_intrinsics
from inference.demo_page import DepthDemo, Runner, depth_readout, find_checkpoints, official_range
from inference.uploads import Camera, DemoInputError, check_input_size, read_photo, upload_info


def pinhole_runner(metric: bool = True, camera: bool = True) -> Runner:
    """Depth fx / 100 m everywhere (the null camera: the canonical K), as a camera-aware model ideally scales."""

    def infer(image: np.ndarray, size: int, K: np.ndarray | None) -> np.ndarray:
        K = canonical_intrinsics(*image.shape[:2]) if K is None or not camera else K
        return np.full(image.shape[:2], K[0, 0] / 100, dtype=np.float32)

    return Runner(infer, metric, camera, "stand-in")


def demo(loads: list | None = None, **kwargs) -> DepthDemo:
    def loader(path):
        (loads if loads is not None else []).append(path)
        return pinhole_runner(**kwargs)

    return DepthDemo({"a.pth": "a.pth", "b.pth": "b.pth"}, loader, max_size=200)


def test_large_upload_is_resized_and_K_scaled_with_it(tmp_path):
    photo = read_photo(write_photo(tmp_path / "big.png", 400, 300), Camera("fx fy cx cy", 380.0), max_size=200)
    assert photo.bgr.shape == (150, 200, 3) and photo.name == "big"
    np.testing.assert_allclose(photo.K, [[190, 0, 99.5], [0, 190, 74.5], [0, 0, 1]])  # the centre stays the centre
    assert "resized to 200 x 150 px" in photo.notes[0]
    with pytest.raises(DemoInputError, match="aspect ratio of at most 4"):
        read_photo(write_photo(tmp_path / "strip.png", 500, 100), Camera(), max_size=2048)
    with pytest.raises(DemoInputError, match="upload an image first"):
        read_photo(None, Camera(), max_size=2048)


def test_upload_info_fills_the_centre_and_picks_exif_when_it_gives_a_focal_length(tmp_path):
    assert upload_info(write_photo(tmp_path / "p.png"), "EXIF") == (
        "160 x 120 px; no focal length in its EXIF data",
        79.5,
        59.5,
        "unknown",
    )
    exif = Image.Exif()
    exif.get_ifd(0x8769)[0xA405] = 26  # FocalLengthIn35mmFilm
    Image.new("RGB", (160, 120)).save(tmp_path / "e.jpg", exif=exif)
    text, _, _, mode = upload_info(tmp_path / "e.jpg", "unknown")
    assert mode == "EXIF" and text == "160 x 120 px; EXIF: 26 mm (35 mm equivalent), fx = fy = 120 px"
    (tmp_path / "bad.png").write_bytes(b"text")
    assert upload_info(tmp_path / "bad.png", "unknown")[0].startswith("**bad.png is not an image")


def test_model_loads_once_per_choice_and_sweep_medians_follow_the_focal_length(tmp_path):
    loads = []
    page = demo(loads)
    photo = write_photo(tmp_path / "p.png")
    sweep = page.camera_sweep("a.pth", photo, Camera("field of view", fov_deg=90.0), 70)
    page.predict("a.pth", photo, Camera(), 70, ply=True)
    assert loads == ["a.pth"]
    assert [row[1:] for row in sweep.rows] == [[40.0, 0.4], [80.0, 0.8], [160.0, 1.6]]
    assert "multiplied the median depth by 0.5, doubling it by 2" in sweep.summary and not sweep.notes
    page.predict("b.pth", photo, Camera(), 70, ply=False)
    assert loads == ["a.pth", "b.pth"]
    with pytest.raises(DemoInputError, match="unknown checkpoint 'c.pth'"):
        page.runner("c.pth")


def test_notes_for_an_unknown_camera_and_a_camera_less_model(tmp_path):
    photo = write_photo(tmp_path / "p.png")
    result = demo().predict("a.pth", photo, Camera(), 70, ply=True)
    assert [p.suffix for p in result.files] == [".png", ".png", ".npy"] and result.preview_ply is None
    assert "learned 'no camera' path" in result.notes[0] and "No point cloud: it needs the camera" in result.notes[1]
    sweep = demo(camera=False).camera_sweep("a.pth", photo, Camera(), 70)
    assert [row[2] for row in sweep.rows] == [1.6, 1.6, 1.6]
    assert "guessed focal length of 160 px" in sweep.notes[0] and "no camera encoder" in sweep.notes[1]


def test_input_size_checkpoints_official_ranges_and_readout(tmp_path):
    assert check_input_size(518.0) == 518
    for bad in (15, 520, 7000, 70.5):
        with pytest.raises(DemoInputError, match="multiple of 14 between 70 and 1022"):
            check_input_size(bad)
    (tmp_path / "run").mkdir()
    for name in ("run/latest.pth", "b.safetensors", "model.onnx", "notes.txt"):
        (tmp_path / name).write_bytes(b"")
    assert list(find_checkpoints(tmp_path)) == ["b.safetensors", "run/latest.pth"]
    assert find_checkpoints(tmp_path / "missing") == {}
    assert official_range("checkpoints/depth_anything_v2_metric_vkitti_vitl.pth") == 80.0
    assert official_range("depth_anything_v2_metric_hypersim_vits.pth") == 20.0
    assert official_range("depth_anything_v2_vits.pth") is None
    depth = np.array([[1.5, 2.0]], dtype=np.float32)
    assert depth_readout(depth, 1, 0, metric=True) == "depth at (1, 0): 2.000 m"
    assert depth_readout(depth, 0, 0, metric=False) == "relative disparity at (0, 0): 1.5"
    assert depth_readout(depth, 5, 0, metric=True) == "(5, 0) is outside the 2 x 1 px depth map"
    assert depth_readout(None, 0, 0, metric=True) == "compute a depth map first"
