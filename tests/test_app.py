"""app.py served on a free 127.0.0.1 port and called through gradio_client, as a program would use the page:
the files of one upload against `infer_image`, the messages for bad input, and the camera button."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from app_server import INPUT_SIZE, save_model, serve_app, write_photo
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError
from PIL import Image

from depth_anything_v2.geometry import make_intrinsics
from depth_anything_v2.loading import build_model_from_checkpoint
from util.ply import read_ply

DEPTH_OUTPUTS = ("slider", "colour_bar", "depth_view", "status", "files", "viewer", "readout")
CAMERA, RELATIVE = "camera_metric.pth", "relative.pth"
K_ARGS = {"camera": "fx fy cx cy", "fx": 150.0, "fy": 150.0, "cx": 79.5, "cy": 59.5}


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    """(client, folder): the page without --load-from over a folder of two checkpoints, uploads resized above 200 px."""
    folder = tmp_path_factory.mktemp("app")
    (folder / "checkpoints").mkdir()
    save_model(folder / "checkpoints" / CAMERA, camera=True, max_depth=20.0)
    save_model(folder / "checkpoints" / RELATIVE, camera=False, max_depth=None)
    flags = ("--checkpoints", str(folder / "checkpoints"), "--input-size", str(INPUT_SIZE), "--max-size", "200")
    with serve_app(folder, *flags) as url:
        yield Client(url, verbose=False, download_files=str(folder / "downloads")), folder


def depth(client: Client, image: Path, checkpoint: str = CAMERA, **camera) -> dict:
    result = client.predict(checkpoint=checkpoint, image=handle_file(str(image)), api_name="/depth", **camera)
    return dict(zip(DEPTH_OUTPUTS, result))


def by_suffix(files: list[str]) -> dict[str, Path]:
    return {"".join(Path(f).suffixes): Path(f) for f in files}


def test_upload_with_K_gives_the_depth_of_infer_image_and_every_file(app):
    client, folder = app
    photo = write_photo(folder / "room.png")
    out = depth(client, photo, ply=True, **K_ARGS)
    files = by_suffix(out["files"])
    assert set(files) == {".gray.png", ".depth16.png", ".npy", ".ply"}, files
    K = make_intrinsics(150.0, 150.0, 79.5, 59.5)
    model = build_model_from_checkpoint(folder / "checkpoints" / CAMERA)
    expected = model.infer_image(cv2.imread(str(photo)), INPUT_SIZE, intrinsics=K)
    depth_map = np.load(files[".npy"])
    assert depth_map.shape == (120, 160) and depth_map.dtype == np.float32
    np.testing.assert_allclose(depth_map, expected, rtol=1e-5, atol=1e-6)
    millimetres = cv2.imread(str(files[".depth16.png"]), cv2.IMREAD_UNCHANGED)
    assert millimetres.dtype == np.uint16
    np.testing.assert_allclose(millimetres, np.round(expected * 1000), atol=1)
    grey = cv2.imread(str(files[".gray.png"]), cv2.IMREAD_UNCHANGED)
    assert grey.shape == (120, 160) and grey.min() == 0 and grey.max() == 255
    points, colors = read_ply(files[".ply"])
    assert len(points) == 120 * 160
    np.testing.assert_allclose(points[:, 2], expected.reshape(-1), rtol=1e-5)
    image, depth_picture = (np.asarray(Image.open(p)) for p in out["slider"])
    assert image.shape[:2] == depth_picture.shape[:2] == (120, 160)
    assert Path(out["viewer"]).name == "room.preview.ply" and Path(out["depth_view"]).is_file()
    assert "metric" in out["status"] and "K as entered: fx 150.0" in out["status"]


@pytest.mark.parametrize(
    "name, content, camera, message",
    [
        ("notes.txt", b"not an image", {}, "Invalid file type"),
        ("broken.png", b"not an image either", {}, "is not an image this page can read"),
        ("room.png", None, {**K_ARGS, "cx": 900.0}, "K does not fit this 160 x 120 px image: cx=900"),
        ("room.png", None, {**K_ARGS, "fx": 4.0, "fy": 4.0}, "is K in millimetres"),
        ("room.png", None, {"camera": "field of view", "fov": 200.0}, "between 0 and 180 degrees"),
        ("room.png", None, {"camera": "EXIF"}, "no focal length in its EXIF data"),
    ],
)
def test_bad_input_gets_a_message(app, name, content, camera, message):
    client, folder = app
    path = folder / name
    write_photo(path) if content is None else path.write_bytes(content)
    with pytest.raises(AppError, match=message):
        depth(client, path, **camera)


def test_relative_model_asked_for_a_point_cloud_gets_depth_and_a_note(app):
    client, folder = app
    out = depth(client, write_photo(folder / "room.png"), RELATIVE, ply=True, camera="field of view", fov=60.0)
    files = by_suffix(out["files"])
    assert set(files) == {".gray.png", ".depth16.png", ".depth16.json", ".npy"}
    assert "No point cloud: this is a relative model" in out["status"] and out["viewer"] is None
    assert "no camera encoder: K is used for the point cloud only" in out["status"]
    assert json.loads(files[".depth16.json"].read_text())["scale"] > 0


def test_too_large_image_is_resized_with_a_note_and_K_follows(app):
    client, folder = app
    photo = write_photo(folder / "large.png", width=400, height=300)
    out = depth(client, photo, camera="fx fy cx cy", fx=380.0)
    assert np.load(by_suffix(out["files"])[".npy"]).shape == (150, 200)
    assert "The image is 400 x 300 px, larger than this page takes (200 px" in out["status"]
    assert "resized to 200 x 150 px" in out["status"]


def test_exif_focal_length_is_used(app):
    client, folder = app
    image = Image.fromarray(cv2.imread(str(write_photo(folder / "exif.png")))[..., ::-1])
    exif = Image.Exif()
    exif.get_ifd(0x8769).update({0x920A: 4.0, 0xA405: 26})  # FocalLength, FocalLengthIn35mmFilm
    image.save(folder / "exif.jpg", exif=exif)
    out = depth(client, folder / "exif.jpg", camera="EXIF")
    # 26 mm equivalent over a 160 x 120 image: 26 mm x 200 px / 43.27 mm (the 35 mm frame diagonal).
    assert "EXIF: 26 mm (35 mm equivalent): fx 120.2" in out["status"]


def test_camera_button_shows_three_maps_and_how_the_median_scales(app):
    client, folder = app
    photo = write_photo(folder / "room.png")
    for checkpoint, expected in ((CAMERA, [0.5, 1.0, 2.0]), (RELATIVE, [1.0, 1.0, 1.0])):
        pictures, table, summary = client.predict(
            checkpoint=checkpoint, image=handle_file(str(photo)), api_name="/camera_sweep", **K_ARGS
        )
        assert len(pictures) == 3 and all(Path(p["image"]).is_file() for p in pictures)
        fx = [row[1] for row in table["data"]]
        medians = np.array([row[2] for row in table["data"]])
        assert fx == [75.0, 150.0, 300.0] and np.isfinite(medians).all() and (medians > 0).all()
        # The checkpoint's prior makes depth proportional to focal length; a model without a camera ignores K.
        np.testing.assert_allclose(medians / medians[1], expected, rtol=2e-3)
        assert "focal x 2: fx 300 px, median" in pictures[2]["caption"] and "Halving the focal length" in summary
    assert "no camera encoder" in summary


def test_requests_wait_in_the_queue_and_all_finish(app):
    client, folder = app
    photo = write_photo(folder / "room.png")
    jobs = [client.submit(image=handle_file(str(photo)), api_name="/depth", **K_ARGS) for _ in range(3)]
    depths = [np.load(by_suffix(job.result(timeout=120)[4])[".npy"]) for job in jobs]
    assert all(np.array_equal(depths[0], d) for d in depths[1:])
