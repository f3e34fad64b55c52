"""run.py on generated images with tiny random-weight vits models: every output kind, the PLY against the depth
unprojected with K, intrinsics as a file / a folder / numbers, and a bad image among good ones."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from depth_anything_v2 import DepthAnythingV2
from depth_anything_v2.geometry import make_intrinsics, unproject
from run import get_args_parser, intrinsics_source, list_images, main, process_image
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


class _FixedDepthModel:
    """Stands in for a metric model whose prediction has invalid pixels (0, negative, NaN, inf)."""

    max_depth = 10.0
    cam_encoder = None

    def __init__(self, depth: np.ndarray) -> None:
        self.depth = depth

    def infer_image(self, raw_image: np.ndarray, input_size: int, intrinsics: np.ndarray | None) -> np.ndarray:
        return self.depth


def test_ply_drops_invalid_depth(images, tmp_path):
    depth = np.full((96, 128), 2.0, dtype=np.float32)
    depth[0, :4] = [0.0, -1.0, np.nan, np.inf]
    K = make_intrinsics(100.0, 100.0, 64.0, 48.0)
    args = get_args_parser().parse_args(["--load-from", "x", "--img-path", "x", "--save-ply", "--save-numpy"])
    process_image(_FixedDepthModel(depth), images / "a.png", K, args, tmp_path)
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
    np.testing.assert_array_equal(intrinsics_source(str(tmp_path / "K.txt"))(images / "a.png"), K_a)
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


def test_folder_intrinsics_missing_for_one_image(models, images, tmp_path, capsys):
    ckpt, _ = models["metric"]
    (tmp_path / "Ks").mkdir()
    np.save(tmp_path / "Ks" / "a.npy", make_intrinsics(150.0, 150.0, 64.0, 48.0))
    argv = ["--load-from", ckpt, "--img-path", images, "--outdir", tmp_path / "o", "--intrinsics", tmp_path / "Ks"]
    assert run(*argv) == 1
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == ["a.png"]
    assert f"{images / 'b.jpg'}: no intrinsics file {tmp_path / 'Ks' / 'b'}.npy" in capsys.readouterr().err


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
        (["--load-from", rel, "--save-ply", "--intrinsics", "1,1,1,1"], "--save-ply needs a metric model"),
        (["--load-from", metric, "--encoder", "vitb"], "trained with encoder 'vits' but 'vitb'"),
        (["--load-from", rel, "--encoder", "vitl"], "checkpoint is vits"),
        (["--load-from", models["ours_relative"], "--max-depth", "20"], "this checkpoint is a relative model"),
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
    assert "multiple of 14" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_list_images_and_intrinsics_source(images, tmp_path):
    assert [p.name for p, origin in list_images(str(images))] == ["a.png", "b.jpg"]
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no images"):
        list_images(str(tmp_path / "empty"))
    (tmp_path / "list.txt").write_text("# nothing\n\n")
    with pytest.raises(ValueError, match="list.txt: the image list is empty"):
        list_images(str(tmp_path / "list.txt"))
    assert intrinsics_source(None)(images / "a.png") is None
    np.testing.assert_array_equal(intrinsics_source("1,2,3,4")(images / "a.png"), make_intrinsics(1, 2, 3, 4))


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
