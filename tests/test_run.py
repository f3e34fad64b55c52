"""run.py on generated images with tiny random-weight vits models: every output kind, the PLY against the depth
unprojected with K, intrinsics as a file / a folder / numbers / focal lengths, a bad image among good ones, the
official command and its default checkpoint, implausible or mis-sized K, a bad --outdir, a web page saved as a
checkpoint, and the 16-bit PNG round trip."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from depth_anything_v2 import DepthAnythingV2
from depth_anything_v2.geometry import make_intrinsics, unproject
from inference.inputs import CameraSource, list_inputs
from inference.raw_depth import read_png16, write_png16
from run import get_args_parser, main, write_outputs
from util.checkpoint import save_checkpoint
from util.dist import resolve_device
from util.ply import read_ply

ROOT = Path(__file__).resolve().parents[1]
SIZE = "70"


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict:
    """An official-style relative state dict, our metric camera-aware checkpoint and our relative checkpoint."""
    folder = tmp_path_factory.mktemp("ckpt")
    torch.manual_seed(0)
    relative = DepthAnythingV2("vits").eval()
    # A random head ends in a ReLU that is zero everywhere; a positive bias gives a varying, positive disparity.
    with torch.no_grad():
        relative.depth_head.scratch.output_conv2[2].bias.fill_(1.0)
    torch.save(relative.state_dict(), folder / "official_vits.pth")
    save_checkpoint({"model": relative.state_dict(), "model_config": relative.config}, folder / "ours_relative.pth")
    metric = DepthAnythingV2("vits", max_depth=20.0, use_camera_intrinsics=True).eval()
    # The camera path is zero-initialised (an identity); random weights make K visibly change the depth.
    with torch.no_grad():
        for p in metric.cam_encoder.parameters():
            p.normal_(0.0, 0.1)
    save_checkpoint({"model": metric.state_dict(), "model_config": metric.config}, folder / "ours_metric.pth")
    return {
        "relative": (folder / "official_vits.pth", relative),
        "metric": (folder / "ours_metric.pth", metric),
        "ours_relative": folder / "ours_relative.pth",
    }


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> Path:
    """A folder with two good images (PNG 96x128, JPG 84x112) and a non-image file that folders skip."""
    folder = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    for name, (h, w) in [("a.png", (96, 128)), ("b.jpg", (84, 112))]:
        ramp = np.linspace(0, 255, w)[None, :, None] * np.ones((h, 1, 3))
        noise = rng.integers(0, 40, (h, w, 3))
        cv2.imwrite(str(folder / name), np.clip(ramp + noise, 0, 255).astype(np.uint8))
    (folder / "notes.md").write_text("not an image")
    return folder


def run(*argv: object) -> int:
    return main(get_args_parser().parse_args([str(a) for a in argv] + ["--input-size", SIZE, "--device", "cpu"]))


def test_relative_official_checkpoint_every_output_kind(models, images, tmp_path):
    ckpt, model = models["relative"]
    assert run("--load-from", ckpt, "--img-path", images, "--outdir", tmp_path / "o", "--save-numpy") == 0
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == ["a.npy", "a.png", "b.npy", "b.png"]
    raw = cv2.imread(str(images / "a.png"))
    panel = cv2.imread(str(tmp_path / "o" / "a.png"))
    assert panel.shape == (96, 2 * 128 + 50, 3)
    np.testing.assert_array_equal(panel[:, :128], raw)
    assert (panel[:, 128:178] == 255).all()
    disp = np.load(tmp_path / "o" / "a.npy")
    assert disp.dtype == np.float32 and disp.shape == (96, 128) and disp.min() > 0 and disp.std() > 0
    # Raw relative disparity, not normalised: exactly what the model predicts.
    np.testing.assert_allclose(disp, model.infer_image(raw, int(SIZE)), rtol=1e-5, atol=1e-6)

    # A model without a camera encoder ignores K: the same depth as without --intrinsics.
    argv = ["--load-from", ckpt, "--img-path", images / "b.jpg", "--outdir", tmp_path / "p", "--pred-only"]
    assert run(*argv, "--save-numpy", "--intrinsics", "60,70,50,40") == 0
    assert cv2.imread(str(tmp_path / "p" / "b.png")).shape == (84, 112, 3)
    np.testing.assert_array_equal(np.load(tmp_path / "p" / "b.npy"), np.load(tmp_path / "o" / "b.npy"))
    args = ["--load-from", ckpt, "--img-path", images / "b.jpg", "--outdir", tmp_path / "g", "--grayscale"]
    assert run(*args, "--pred-only") == 0
    grey = cv2.imread(str(tmp_path / "g" / "b.png"))
    assert grey.shape == (84, 112, 3) and (grey[..., 0] == grey[..., 1]).all() and (grey[..., 1] == grey[..., 2]).all()
    assert grey.min() == 0 and grey.max() == 255
    assert not (tmp_path / "g" / "b.npy").exists()


def test_metric_ply_equals_depth_unprojected_with_K(models, images, tmp_path):
    ckpt, model = models["metric"]
    K = make_intrinsics(150.0, 140.0, 63.5, 47.5)
    argv = ["--load-from", ckpt, "--img-path", images / "a.png", "--outdir", tmp_path, "--save-numpy", "--save-ply"]
    assert run(*argv, "--intrinsics", "150,140,63.5,47.5") == 0
    depth = np.load(tmp_path / "a.npy")
    raw = cv2.imread(str(images / "a.png"))
    np.testing.assert_allclose(depth, model.infer_image(raw, int(SIZE), intrinsics=K), rtol=1e-5)
    assert 0 < depth.min() and depth.max() <= 20.0
    points, colors = read_ply(tmp_path / "a.ply")
    valid = np.isfinite(depth) & (depth > 0)
    expected = unproject(depth, K)[valid].astype(np.float32)
    assert points.shape == expected.shape == (96 * 128, 3)
    np.testing.assert_allclose(points, expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(colors, raw[..., ::-1][valid])
    # OpenCV axes, independent of unproject: x right of the principal point (63.5, 47.5), y below it, z = depth.
    grid = points.reshape(96, 128, 3)
    assert (grid[:, :64, 0] < 0).all() and (grid[:, 64:, 0] > 0).all()
    assert (grid[:48, :, 1] < 0).all() and (grid[48:, :, 1] > 0).all()
    np.testing.assert_allclose(grid[..., 2], depth, rtol=1e-6)


def test_ply_drops_invalid_depth(images, tmp_path):
    depth = np.full((96, 128), 2.0, dtype=np.float32)
    depth[0, :4] = [0.0, -1.0, np.nan, np.inf]  # a metric prediction with invalid pixels
    K = make_intrinsics(100.0, 100.0, 64.0, 48.0)
    args = get_args_parser().parse_args(["--load-from", "x", "--img-path", "x", "--save-ply", "--save-numpy"])
    write_outputs(cv2.imread(str(images / "a.png")), depth, K, True, args, tmp_path / "a")
    points, colors = read_ply(tmp_path / "a.ply")
    assert len(points) == 96 * 128 - 4
    np.testing.assert_allclose(points, unproject(depth, K).reshape(-1, 3)[4:], rtol=1e-6)
    assert colors[0].tolist() == cv2.imread(str(images / "a.png"))[0, 4, ::-1].tolist()
    np.testing.assert_array_equal(np.load(tmp_path / "a.npy"), depth)


def test_intrinsics_from_a_file_a_folder_and_numbers(models, images, tmp_path):
    ckpt, _ = models["metric"]
    K_a, K_b = make_intrinsics(150.0, 150.0, 64.0, 48.0), make_intrinsics(60.0, 70.0, 50.0, 40.0)
    np.save(tmp_path / "K.npy", K_a)
    (tmp_path / "K.txt").write_text("150 150 64 48\n")
    (tmp_path / "Ks").mkdir()
    np.save(tmp_path / "Ks" / "a.npy", K_a)
    np.save(tmp_path / "Ks" / "b.npy", K_b)
    outputs = {}
    np.testing.assert_array_equal(CameraSource(str(tmp_path / "K.txt"), None, None)(images / "a.png", 128, 96), K_a)
    for name, spec in [("npy", tmp_path / "K.npy"), ("numbers", "150,150,64,48")]:
        out = tmp_path / name
        argv = ["--load-from", ckpt, "--img-path", images / "a.png", "--outdir", out, "--save-numpy", "--save-ply"]
        assert run(*argv, "--intrinsics", spec) == 0
        outputs[name] = np.load(out / "a.npy")
        np.testing.assert_allclose(read_ply(out / "a.ply")[0].reshape(96, 128, 3), unproject(outputs[name], K_a), 1e-5)
    np.testing.assert_array_equal(outputs["npy"], outputs["numbers"])

    out = tmp_path / "folder"
    argv = ["--load-from", ckpt, "--img-path", images, "--outdir", out, "--save-numpy", "--save-ply"]
    assert run(*argv, "--intrinsics", tmp_path / "Ks") == 0
    np.testing.assert_array_equal(np.load(out / "a.npy"), outputs["numbers"])
    depth_b = np.load(out / "b.npy")
    np.testing.assert_allclose(read_ply(out / "b.ply")[0].reshape(84, 112, 3), unproject(depth_b, K_b), 1e-5)
    # K reaches the camera-aware model: a different K gives a different depth for the same image.
    assert run(*argv[:2], "--img-path", images / "b.jpg", "--outdir", tmp_path / "b2", "--save-numpy",
               "--intrinsics", tmp_path / "K.npy") == 0  # fmt: skip
    assert not np.allclose(np.load(tmp_path / "b2" / "b.npy"), depth_b)


def test_bad_image_among_good_ones_is_reported_and_the_rest_written(models, images, tmp_path, capsys):
    ckpt, _ = models["relative"]
    data = tmp_path / "data"
    data.mkdir()
    for name in ("a.png", "b.jpg"):
        (data / name).write_bytes((images / name).read_bytes())
    (data / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 10)
    assert run("--load-from", ckpt, "--img-path", data, "--outdir", tmp_path / "o") == 1
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == ["a.png", "b.png"]
    err = capsys.readouterr().err
    assert "1 of 3 images failed:" in err and f"{data / 'broken.png'}: cannot read image" in err

    listing = tmp_path / "lists" / "images.txt"
    listing.parent.mkdir()
    listing.write_text(f"# test images\n../data/a.png\n\n{data / 'b.jpg'}\nmissing.jpg\n")
    assert run("--load-from", ckpt, "--img-path", listing, "--outdir", tmp_path / "l") == 1
    assert sorted(p.name for p in (tmp_path / "l").iterdir()) == ["a.png", "b.png"]
    err = capsys.readouterr().err
    assert "1 of 3 images failed:" in err and "missing.jpg: cannot read image" in err
    assert f"(listed in {listing} line 5)" in err


def test_folder_intrinsics_missing_for_one_image_is_refused_before_any_work(models, images, tmp_path, capsys):
    ckpt, _ = models["metric"]
    (tmp_path / "Ks").mkdir()
    np.save(tmp_path / "Ks" / "a.npy", make_intrinsics(150.0, 150.0, 64.0, 48.0))
    argv = ["--load-from", ckpt, "--img-path", images, "--outdir", tmp_path / "o", "--intrinsics", tmp_path / "Ks"]
    assert run(*argv) == 2
    assert not (tmp_path / "o").exists()
    err = capsys.readouterr().err
    assert "1 of the 2 inputs have no K that fits them (nothing was written)" in err
    assert f"{images / 'b.jpg'}: no intrinsics file {tmp_path / 'Ks' / 'b'}.npy" in err


def test_bf16_and_compiled_runs_write_the_same_depth_closely(models, images, tmp_path, monkeypatch):
    ckpt = models["metric"][0]
    base = ["--load-from", ckpt, "--img-path", images / "b.jpg", "--intrinsics", "60,70,50,40", "--save-numpy"]
    assert run(*base, "--outdir", tmp_path / "fp32") == 0
    assert run(*base, "--outdir", tmp_path / "bf16", "--precision", "bf16") == 0
    fp32, bf16 = np.load(tmp_path / "fp32" / "b.npy"), np.load(tmp_path / "bf16" / "b.npy")
    assert bf16.dtype == np.float32 and not np.array_equal(bf16, fp32)  # it did run in bf16
    assert np.median(np.abs(bf16 - fp32) / fp32) < 0.005
    # Compiling costs half a minute here: stand in for it with a wrapper of the forward, which nn.Module.compile
    # installs the same way, and check that the model is compiled in place and that the images go through it.
    compiled, calls = [], []

    def fake_compile(self, *args, **kwargs):
        compiled.append((type(self), kwargs))
        call_impl = self._call_impl
        self._compiled_call_impl = lambda *a, **k: calls.append(a[0].shape) or call_impl(*a, **k)

    monkeypatch.setattr(DepthAnythingV2, "compile", fake_compile)
    assert run(*base, "--outdir", tmp_path / "compiled", "--compile") == 0
    assert compiled == [(DepthAnythingV2, {"options": {"freezing": True}})] and len(calls) == 1
    np.testing.assert_array_equal(np.load(tmp_path / "compiled" / "b.npy"), fp32)


def test_refused_at_start(models, images, tmp_path, capsys):
    rel, metric = models["relative"][0], models["metric"][0]
    base = ["--img-path", images / "a.png", "--outdir", tmp_path / "o"]
    cases = [
        (["--load-from", metric, "--save-ply"], "--save-ply needs a metric model"),
        (["--load-from", rel, "--save-ply", "--intrinsics", "100,100,63.5,47.5"], "--save-ply needs a metric model"),
        (["--load-from", metric, "--encoder", "vitb"], "trained with encoder 'vits' but 'vitb'"),
        (["--load-from", rel, "--encoder", "vitl"], "checkpoint is vits"),
        (["--load-from", models["ours_relative"], "--max-depth", "20"], "relative model"),
        (["--load-from", metric, "--intrinsics", "1,2,3"], "not a file, a folder, or four numbers"),
        (["--load-from", metric, "--intrinsics=-5,5,3,3"], "focal lengths must be positive"),
        (["--load-from", tmp_path / "none.pth"], "checkpoint file not found"),
        (["--load-from", metric, "--img-path", tmp_path / "nothing"], "not a file or a folder"),
        (["--load-from", metric, "--precision", "fp16"], "--precision fp16 needs CUDA, the device is cpu"),
    ]
    for argv, message in cases:
        assert run(*base, *argv) == 2, argv
        assert message in capsys.readouterr().err, argv
    assert main(get_args_parser().parse_args(["--load-from", str(metric), *map(str, base), "--input-size", "50"])) == 2
    assert "multiple of 14, got 50 (try 56)" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_list_inputs_and_camera_source(images, tmp_path):
    assert [p.name for p, origin in list_inputs(str(images))[0]] == ["a.png", "b.jpg"]
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no images"):
        list_inputs(str(tmp_path / "empty"))
    (tmp_path / "list.txt").write_text("# nothing\n\n")
    with pytest.raises(ValueError, match="list.txt: the image list is empty"):
        list_inputs(str(tmp_path / "list.txt"))
    assert CameraSource(None, None, None)(images / "a.png", 128, 96) is None
    K = make_intrinsics(100, 110, 63, 47)
    np.testing.assert_array_equal(CameraSource("100,110,63,47", None, None)(images / "a.png", 128, 96), K)


def test_resolve_device():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type in {"cuda", "mps", "cpu"}
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="CUDA is not available"):
            resolve_device("cuda")


def test_command_line_entry_point(models, images, tmp_path):
    ckpt, _ = models["metric"]
    cmd = [sys.executable, "run.py", "--load-from", str(ckpt), "--img-path", str(images / "b.jpg"),
           "--outdir", str(tmp_path), "--input-size", SIZE, "--device", "cpu", "--intrinsics", "60,70,50,40",
           "--save-ply"]  # fmt: skip
    result = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "camera-aware model; intrinsics go into the camera encoder" in result.stderr
    assert (tmp_path / "b.png").is_file() and len(read_ply(tmp_path / "b.ply")[0]) == 84 * 112
    # Piped, not a terminal: no progress bar redrawn with carriage returns, so no log line shares a line with one.
    assert "\r" not in result.stderr
    assert all(line.startswith(("INFO ", "WARNING ")) for line in result.stderr.splitlines()), result.stderr


def test_official_command_loads_the_default_checkpoint(models, images, tmp_path):
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "depth_anything_v2_vits.pth").write_bytes(models["relative"][0].read_bytes())
    cmd = [sys.executable, str(ROOT / "run.py"), "--encoder", "vits", "--img-path", str(images), "--outdir",
           "depth_vis", "--input-size", SIZE, "--pred-only", "--grayscale"]  # fmt: skip
    result = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    grey = cv2.imread(str(tmp_path / "depth_vis" / "a.png"))
    assert grey.shape == (96, 128, 3) and (grey[..., 0] == grey[..., 2]).all()
    assert sorted(p.name for p in (tmp_path / "depth_vis").iterdir()) == ["a.png", "b.png"]


def test_missing_default_checkpoint_says_where_to_get_it(images, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert run("--encoder", "vitb", "--img-path", images, "--outdir", tmp_path / "o") == 2
    err = capsys.readouterr().err
    assert "depth_anything_v2_vitb.pth is used, but it is not in" in err and str(tmp_path / "checkpoints") in err
    assert "https://huggingface.co/depth-anything/Depth-Anything-V2-Base into checkpoints/" in err
    assert run("--img-path", images, "--max-depth", "20", "--outdir", tmp_path / "o") == 2
    assert "--max-depth needs a metric checkpoint: add --load-from" in capsys.readouterr().err


def test_focal_length_flags_centre_the_principal_point(models, images, tmp_path, capsys):
    ckpt = models["metric"][0]
    argv = ["--load-from", ckpt, "--img-path", images / "a.png", "--save-numpy", "--save-ply"]
    assert run(*argv, "--outdir", tmp_path / "f", "--focal-length-x", "150", "--focal-length-y", "140") == 0
    assert run(*argv, "--outdir", tmp_path / "k", "--intrinsics", "150,140,63.5,47.5") == 0
    depth = np.load(tmp_path / "f" / "a.npy")
    np.testing.assert_array_equal(depth, np.load(tmp_path / "k" / "a.npy"))
    K = make_intrinsics(150.0, 140.0, 63.5, 47.5)
    np.testing.assert_allclose(read_ply(tmp_path / "f" / "a.ply")[0].reshape(96, 128, 3), unproject(depth, K), 1e-5)
    for extra, message in [
        (["--focal-length-y", "140"], "--focal-length-y needs --focal-length-x"),
        (["--focal-length-x", "150", "--intrinsics", "150,150,64,48"], "either --intrinsics or --focal-length"),
        (["--focal-length-x", "0"], "focal lengths must be positive"),
    ]:
        assert run(*argv, "--outdir", tmp_path / "x", *extra) == 2
        assert message in capsys.readouterr().err


def test_implausible_intrinsics_are_refused_naming_the_cause(models, images, tmp_path, capsys):
    """Issue 16: K in millimetres, normalised K, a principal point far outside, skew (a 128 x 96 image)."""
    ckpt = models["metric"][0]
    (tmp_path / "skew.txt").write_text("100 5 63 0 100 47 0 0 1\n")
    cases = [
        ("3.9,3.9,64,48", "fx=3.9 px is implausibly small for an image 128 px across"),
        ("0.9,0.9,0.5,0.5", "look normalised by the image size; K must be in pixels"),
        ("1000,1000,3000,3000", "cx=3000 lies far outside the image (128 px across): is K for an image of another"),
        ("150,150,127.5,95.5", "cx=127.5 lies 50% of the image's 128 px from its centre 63.5: is K for an image of"),
        (tmp_path / "skew.txt", "K has skew or shear terms (5, 0)"),
    ]
    for spec, message in cases:
        assert run("--load-from", ckpt, "--img-path", images, "--outdir", tmp_path / "o", "--intrinsics", spec) == 2
        err = capsys.readouterr().err
        assert f"--intrinsics {spec}" in err and message in err and f"checked against {images / 'a.png'}" in err
    assert not (tmp_path / "o").exists()
    # One K of a folder in millimetres: refused before any work, naming its K file.
    (tmp_path / "Ks").mkdir()
    np.save(tmp_path / "Ks" / "a.npy", make_intrinsics(150.0, 150.0, 64.0, 48.0))
    np.save(tmp_path / "Ks" / "b.npy", make_intrinsics(4.2, 4.2, 2.8, 2.1))
    assert (
        run("--load-from", ckpt, "--img-path", images, "--outdir", tmp_path / "k", "--intrinsics", tmp_path / "Ks") == 2
    )
    assert f"K from {tmp_path / 'Ks' / 'b.npy'} does not fit this 112 x 84 px input" in capsys.readouterr().err
    assert not (tmp_path / "k").exists()


def test_one_K_for_images_of_other_sizes_is_scaled_with_a_warning(models, images, tmp_path, caplog, capsys):
    ckpt = models["metric"][0]
    folder = tmp_path / "mixed"
    folder.mkdir()
    a = cv2.imread(str(images / "a.png"))
    cv2.imwrite(str(folder / "a.png"), a)
    cv2.imwrite(str(folder / "c_half.png"), cv2.resize(a, (64, 48), interpolation=cv2.INTER_AREA))
    cv2.imwrite(str(folder / "d_rotated.png"), cv2.rotate(a, cv2.ROTATE_90_CLOCKWISE))
    argv = ["--load-from", ckpt, "--img-path", folder, "--save-numpy", "--intrinsics", "150,150,63.5,47.5"]
    assert run(*argv, "--outdir", tmp_path / "o") == 2  # the rotated image stops the run before any output
    assert not (tmp_path / "o").exists()
    err = capsys.readouterr().err
    assert "1 of the 3 inputs have no K that fits them (nothing was written)" in err
    assert "d_rotated.png: 96 x 128 px, but --intrinsics 150,150,63.5,47.5 is for 128 x 96 px images" in err
    assert "of another aspect ratio (rotated by 90 degrees" in err
    assert "(rotated by 90 degrees: EXIF orientation?)" in err and "--intrinsics FOLDER" in err
    (folder / "d_rotated.png").unlink()
    assert run(*argv, "--outdir", tmp_path / "o") == 0
    assert "c_half.png: 64 x 48 px, but --intrinsics 150,150,63.5,47.5 is for 128 x 96 px" in caplog.text
    assert "K scaled by 0.5 x 0.5 to fx 75.0, fy 75.0, cx 31.5, cy 23.5 px" in caplog.text
    argv = ["--load-from", ckpt, "--img-path", folder / "c_half.png", "--outdir", tmp_path / "c", "--save-numpy"]
    assert run(*argv, "--intrinsics", "75,75,31.5,23.5") == 0
    np.testing.assert_array_equal(np.load(tmp_path / "o" / "c_half.npy"), np.load(tmp_path / "c" / "c_half.npy"))


def test_bad_outdir_and_bad_files_are_found_before_any_work(models, images, tmp_path, capsys, monkeypatch):
    (tmp_path / "file").write_text("x")
    page = tmp_path / "page.pth"
    page.write_text("<!DOCTYPE html>\n<html><head><title>Sign in</title></head></html>\n")
    missing = tmp_path / "missing.pth"  # the outdir is checked first: no checkpoint is read for these
    for outdir, message in [
        (tmp_path / "file", f"--outdir {tmp_path / 'file'}: is a file, not a folder"),
        (tmp_path / "file" / "sub", f"{tmp_path / 'file'} is a file, so no folder can be made below it"),
    ]:
        assert run("--load-from", missing, "--img-path", images, "--outdir", outdir) == 2
        assert message in capsys.readouterr().err

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    with monkeypatch.context() as patch:
        patch.setattr("inference.inputs.tempfile.TemporaryFile", refuse)
        assert run("--load-from", missing, "--img-path", images, "--outdir", tmp_path / "ro" / "out") == 2
    err = capsys.readouterr().err
    assert f"cannot write in {tmp_path} (Permission denied); choose a folder you can write to" in err
    assert run("--load-from", page, "--img-path", images, "--outdir", tmp_path / "o") == 2
    err = capsys.readouterr().err
    assert f"{page}: not a checkpoint (it starts with '<!DOCTYPE html>'" in err and "re-download it" in err
    with pytest.raises(ValueError, match=r"intrinsics must be a 3x3 matrix, got shape \(4, 4\)"):
        models["metric"][1].infer_image(cv2.imread(str(images / "a.png")), 70, intrinsics=np.eye(4))


def test_png16_round_trip(models, images, tmp_path):
    for kind in ("metric", "relative"):
        ckpt = models[kind][0]
        out = tmp_path / kind
        assert run("--load-from", ckpt, "--img-path", images, "--outdir", out, "--save-numpy", "--save-png16") == 0
        for stem in ("a", "b"):
            depth, png = np.load(out / f"{stem}.npy"), cv2.imread(str(out / f"{stem}.depth16.png"), -1)
            assert png.dtype == np.uint16 and png.shape == depth.shape
            if kind == "metric":
                assert not (out / f"{stem}.depth16.json").exists()
                np.testing.assert_array_equal(png, np.round(depth.astype(np.float64) * 1000))  # millimetres
                np.testing.assert_allclose(read_png16(out / f"{stem}.depth16.png"), depth, atol=5e-4)
            else:
                scale = json.loads((out / f"{stem}.depth16.json").read_text())["scale"]
                assert png.max() == 65535 and scale == pytest.approx(depth.max() / 65535)
                np.testing.assert_allclose(read_png16(out / f"{stem}.depth16.png"), depth, atol=scale / 2 + 1e-7)
    depth = np.array([[0.0, np.nan, -1.0, 1e-4], [70.0, np.inf, 1.2344, 65.535]], dtype=np.float32)
    write_png16(tmp_path / "edge", depth, metric=True)
    stored = cv2.imread(str(tmp_path / "edge.depth16.png"), -1)
    np.testing.assert_array_equal(stored, [[0, 0, 0, 1], [65535, 0, 1234, 65535]])


def test_K_that_fits_some_inputs_only_is_refused_naming_each_before_the_model_is_read(images, tmp_path, capsys):
    """Issue 26: one K over photos of several aspect ratios stopped at the first misfit after writing the others."""
    folder = tmp_path / "mixed"
    folder.mkdir()
    a = cv2.imread(str(images / "a.png"))
    cv2.imwrite(str(folder / "a.png"), a)
    cv2.imwrite(str(folder / "b_wide.png"), cv2.resize(a, (128, 48)))
    cv2.imwrite(str(folder / "c_tall.jpg"), cv2.resize(a, (48, 96)))
    cv2.imwrite(str(folder / "d_half.png"), cv2.resize(a, (64, 48)))
    missing = tmp_path / "missing.pth"  # K is checked first: the checkpoint is never read
    argv = ["--load-from", missing, "--img-path", folder, "--outdir", tmp_path / "o"]
    assert run(*argv, "--intrinsics", "150,150,63.5,47.5") == 2
    err = capsys.readouterr().err
    assert "2 of the 4 inputs have no K that fits them (nothing was written)" in err
    assert f"{folder / 'b_wide.png'}: 128 x 48 px, but --intrinsics 150,150,63.5,47.5 is for 128 x 96 px" in err
    assert f"{folder / 'c_tall.jpg'}: 48 x 96 px" in err and "d_half" not in err and "checkpoint" not in err
    assert not (tmp_path / "o").exists()


def test_K_of_a_smaller_photo_is_refused_unless_the_offcentre_flag_is_given(images, tmp_path, capsys):
    """Issue 27: K made for a 40 x 30 px copy given for the 128 x 96 px photo (cx 19.5 of 128) passed."""
    missing = tmp_path / "missing.pth"
    argv = ["--load-from", missing, "--img-path", images / "a.png", "--outdir", tmp_path / "o"]
    assert run(*argv, "--intrinsics", "40,40,19.5,14.5") == 2
    err = capsys.readouterr().err
    assert "cx=19.5 lies 34% of the image's 128 px from its centre 63.5: is K for an image of another size" in err
    assert "if this K is right (a crop, a shifted lens), pass --allow-offcentre-principal-point" in err
    assert run(*argv, "--intrinsics", "40,40,19.5,14.5", "--allow-offcentre-principal-point") == 2
    assert "checkpoint file not found" in capsys.readouterr().err  # K accepted: the run went on to the model


def test_intrinsics_starting_with_a_minus_are_a_value_and_input_size_gets_a_suggestion(images, tmp_path, capsys):
    args = get_args_parser().parse_args(["--img-path", "x", "--intrinsics", "-500,500,63,47", "--save-numpy"])
    assert args.intrinsics == "-500,500,63,47" and args.save_numpy
    argv = ["--load-from", tmp_path / "none.pth", "--img-path", images, "--outdir", tmp_path / "o"]
    assert run(*argv, "--intrinsics", "-500,500,63,47") == 2
    assert "--intrinsics '-500,500,63,47': focal lengths must be positive, got fx=-500" in capsys.readouterr().err
    assert main(get_args_parser().parse_args([*map(str, argv), "--input-size", "100"])) == 2
    assert "--input-size must be a positive multiple of 14, got 100 (try 98)" in capsys.readouterr().err
