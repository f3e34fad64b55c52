"""Web demo: depth of a photo in the browser, with its camera, and what the camera does to the depth.

    # one checkpoint (ours carry their config; official metric ones are recognised by their file names)
    python app.py --load-from checkpoints/training_run/latest.pth

    # a model of the Hugging Face hub by name (fetched into the hub cache once)
    python app.py --load-from depth-anything/Depth-Anything-V2-Metric-Hypersim-Small

    # pick one of the checkpoints found in checkpoints/ on the page (files, and saved model folders)
    python app.py --port 7861

Serves http://127.0.0.1:PORT on this machine only: no share link, no analytics, nothing fetched at start but a hub
--load-from that is not cached yet. Inputs:
an image, its camera (unknown; fx fy cx cy in pixels of the uploaded image; a horizontal field of view; or the
focal length and sensor data in its EXIF), the network input size. Outputs: image and depth with a slider, a colour
bar, the depth of a clicked pixel, downloads (grayscale PNG, 16-bit PNG in millimetres for metric models, .npy,
.ply) and a 3D view of the point cloud. "What does the camera do?" re-runs the image with the focal length halved
and doubled. One inference runs at a time; the others wait in the queue.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from functools import partial
from pathlib import Path

import gradio as gr

from dataset.io import IMAGE_SUFFIXES, DataError
from depth_anything_v2 import MODEL_CONFIGS, PATCH_SIZE
from depth_anything_v2.loading import CheckpointError
from inference.backends import BACKENDS
from inference.camera_inputs import CAMERA_MODES, FOV, PIXELS, CameraInputError
from inference.demo_page import DepthDemo, depth_readout, find_checkpoints, load_runner
from inference.uploads import INPUT_SIZES, Camera, DemoInputError, check_input_size, upload_info

INPUT_PROBLEMS = (DemoInputError, CameraInputError, CheckpointError, DataError)
INTRO = """# Depth Anything V2 with camera intrinsics
Upload a photo and tell the page its camera, then **Compute depth**. Drag the slider to compare image and depth;
click the depth side for the depth of a pixel. **What does the camera do?** runs the photo again with the focal
length halved and doubled: a camera-aware metric model scales its depth with the focal length, a model without a
camera does not."""
PIXEL_HELP = "Pixels of the uploaded image. fy 0: the same as fx; cx, cy: the centre, filled in on upload."


def get_args_parser() -> argparse.ArgumentParser:
    """The command-line flags, in groups: model, page, runtime."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    model = parser.add_argument_group("model")
    model.add_argument(
        "--load-from",
        help="official .pth, one of our checkpoints, a saved model folder, a Hugging Face hub name (docs/HUB.md), or "
        "an .onnx (ONNX backends); default: choose on the page",
    )
    model.add_argument("--checkpoints", default="checkpoints", help="folder listed on the page without --load-from")
    model.add_argument("--encoder", choices=sorted(MODEL_CONFIGS), help="official checkpoints only (default: inferred)")
    model.add_argument(
        "--max-depth",
        type=float,
        help="metric range (m) of an official metric checkpoint (default: 20 for *metric_hypersim*, 80 for "
        "*metric_vkitti* file names)",
    )
    model.add_argument(
        "--backend",
        default="torch",
        choices=BACKENDS,
        help="what runs the model; onnxruntime / openvino (CPU) export a checkpoint to ONNX once per input size "
        "(cached beside it, as run.py does), or take an .onnx of export.py",
    )
    page = parser.add_argument_group("page")
    page.add_argument("--port", type=int, default=7860, help="port on 127.0.0.1")
    page.add_argument("--input-size", type=int, default=518, help=f"network short side, multiple of {PATCH_SIZE}")
    page.add_argument("--max-size", type=int, default=2048, help="uploads larger than this (px, long side) are resized")
    runtime = parser.add_argument_group("runtime")
    runtime.add_argument("--device", default="auto", help="auto | cpu | cuda | mps")
    return parser


def build_page(service: DepthDemo, input_size: int, interactive_choice: bool) -> gr.Blocks:
    """The page and its events: /depth and /camera_sweep share one queue slot (one inference at a time)."""
    names = list(service.checkpoints)
    with gr.Blocks(title="Depth Anything V2 with camera intrinsics", analytics_enabled=False) as page:
        gr.Markdown(INTRO)
        with gr.Row():
            with gr.Column(scale=1):
                checkpoint = gr.Dropdown(names, value=names[0], label="Checkpoint", interactive=interactive_choice)
                upload = gr.File(label="Image", file_types=list(IMAGE_SUFFIXES), type="filepath", elem_id="upload")
                image_info = gr.Markdown()
                mode = gr.Radio(list(CAMERA_MODES), value=CAMERA_MODES[0], label="Camera")
                with gr.Column(visible=False) as pixel_fields:
                    with gr.Row():
                        fx_box, fy_box, cx_box, cy_box = (
                            gr.Number(label=f"{name} (px)", min_width=80) for name in ("fx", "fy", "cx", "cy")
                        )
                    gr.Markdown(PIXEL_HELP)
                fov_box = gr.Number(label="Horizontal field of view (degrees)", visible=False)
                size = gr.Slider(*INPUT_SIZES, value=input_size, step=PATCH_SIZE, label="Network input short side (px)")
                ply = gr.Checkbox(value=True, label="Point cloud (.ply): metric models with a known camera")
                run = gr.Button("Compute depth", variant="primary", elem_id="run")
                sweep = gr.Button("What does the camera do?", elem_id="sweep")
            with gr.Column(scale=2):
                slider = gr.ImageSlider(label="Image | depth", type="numpy", format="png", elem_id="slider")
                bar = gr.Image(label="Colour bar", type="numpy", format="png", height=90, interactive=False)
                status = gr.Markdown(label="Status", elem_id="status")
                files = gr.File(label="Downloads", file_count="multiple", interactive=False, elem_id="downloads")
        with gr.Row():
            with gr.Column():
                depth_view = gr.Image(
                    label="Depth: click a pixel", type="numpy", format="png", interactive=False, elem_id="depth_view"
                )
                readout = gr.Textbox(label="Depth of the clicked pixel", interactive=False, elem_id="readout")
            viewer = gr.Model3D(
                label="Point cloud preview (seen from the camera; drag to turn)",
                display_mode="point_cloud",
                camera_position=(-90, 90, None),
                height=420,
                interactive=False,
                elem_id="viewer",
            )
        gr.Markdown("## What does the camera do?")
        with gr.Row():
            gallery = gr.Gallery(label="Focal length x 0.5, x 1, x 2 (one colour range)", columns=3, scale=2)
            table = gr.Dataframe(headers=["run", "fx (px)", "median"], label="Median per run", scale=1)
        sweep_summary = gr.Markdown(label="Sweep summary")
        last_depth = gr.State()

        camera_fields = [mode, fx_box, fy_box, cx_box, cy_box, fov_box, size]

        def on_mode(choice: str):
            return gr.update(visible=choice == PIXELS), gr.update(visible=choice == FOV)

        # The defaults make the camera numbers optional for API clients (gradio_client).
        def depth(checkpoint, image, camera, fx=None, fy=None, cx=None, cy=None, fov=None, input_size=518, ply=True):
            try:
                shot = Camera(camera, fx, fy, cx, cy, fov)
                result = service.predict(checkpoint, image, shot, input_size, ply)
            except INPUT_PROBLEMS as err:
                raise gr.Error(str(err), duration=None, print_exception=False) from None
            notes = "".join(f"\n- {note}" for note in result.notes)
            return (
                (result.image, result.depth_picture),
                result.colour_bar,
                result.depth_picture,
                f"{result.summary}{notes}",
                [str(p) for p in result.files],
                str(result.preview_ply) if result.preview_ply else None,
                "",
                (result.depth, result.metric),
            )

        def camera_sweep(checkpoint, image, camera, fx=None, fy=None, cx=None, cy=None, fov=None, input_size=518):
            try:
                result = service.camera_sweep(checkpoint, image, Camera(camera, fx, fy, cx, cy, fov), input_size)
            except INPUT_PROBLEMS as err:
                raise gr.Error(str(err), duration=None, print_exception=False) from None
            notes = "".join(f"\n- {note}" for note in result.notes)
            return result.pictures, result.rows, f"{result.summary}{notes}"

        def on_select(state: tuple | None, event: gr.SelectData):
            values, metric = state or (None, False)
            return depth_readout(values, int(event.index[0]), int(event.index[1]), metric)

        mode.change(on_mode, mode, [pixel_fields, fov_box], api_visibility="private")
        upload.upload(upload_info, [upload, mode], [image_info, cx_box, cy_box, mode], api_visibility="private")
        upload.clear(lambda: "", None, image_info, api_visibility="private")
        run.click(
            depth,
            [checkpoint, upload, *camera_fields, ply],
            [slider, bar, depth_view, status, files, viewer, readout, last_depth],
            api_name="depth",
            concurrency_limit=1,
            concurrency_id="model",
        )
        sweep.click(
            camera_sweep,
            [checkpoint, upload, *camera_fields],
            [gallery, table, sweep_summary],
            api_name="camera_sweep",
            concurrency_limit=1,
            concurrency_id="model",
        )
        depth_view.select(on_select, last_depth, readout, api_visibility="private")
    return page


def main(args: argparse.Namespace) -> int:
    """Load the model (with --load-from) and serve the page until interrupted; 2 if it cannot start."""
    os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
    try:
        check_input_size(args.input_size)
        if args.load_from:
            checkpoints = {Path(args.load_from).name: Path(args.load_from)}
        else:
            checkpoints = find_checkpoints(args.checkpoints)
            if not checkpoints:
                raise DemoInputError(
                    f"no checkpoints (.pth, .pt, .safetensors) in {args.checkpoints}/: put some there "
                    "(checkpoints/README.md) or give --load-from"
                )
        loader = partial(
            load_runner,
            backend=args.backend,
            device=args.device,
            encoder=args.encoder,
            max_depth=args.max_depth,
            input_size=args.input_size,
        )
        service = DepthDemo(checkpoints, loader, args.max_size)
        if args.load_from:
            service.runner(next(iter(checkpoints)))  # load once now: a bad checkpoint fails here, not on the page
    except (*INPUT_PROBLEMS, RuntimeError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    page = build_page(service, args.input_size, interactive_choice=not args.load_from)
    try:
        page.queue(default_concurrency_limit=1).launch(
            server_name="127.0.0.1",
            server_port=args.port,
            share=False,
            show_error=True,
            max_file_size="50mb",
            footer_links=["api"],
        )
    except OSError as err:  # Gradio's "Cannot find empty port", or an address that cannot be bound
        print(f"error: cannot serve on 127.0.0.1:{args.port} ({err}); choose another --port", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    sys.exit(main(get_args_parser().parse_args()))
