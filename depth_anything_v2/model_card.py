"""The model card (README.md) of a model folder written by `save_pretrained`: hub metadata, what the model is, how
it was trained and evaluated, and the commands that load it."""

from __future__ import annotations

ENCODER_NAMES = {"vits": "ViT-S", "vitb": "ViT-B", "vitl": "ViT-L", "vitg": "ViT-G"}


def _yaml_list(values: list[str]) -> str:
    return "".join(f"\n- {value}" for value in values)


def model_card(config: dict, transformers_format: bool, training: dict | None, repo_id: str) -> str:
    """README.md text with YAML metadata (library, pipeline tag, licence placeholder, tags).

    Args:
        config: the model's `DepthAnythingV2.config`.
        transformers_format: the folder is in transformers' format (else this repo's).
        training: what the run says, each key optional: 'datasets' (list of names or paths), 'pretrained_from',
            'iterations' (int), 'metrics' ({name: value} of the last evaluation), 'metrics_step' (its iteration).
        repo_id: the hub name the load commands use.
    """
    training = training or {}
    encoder = config["encoder"]
    max_depth = config.get("max_depth")
    camera = bool(config.get("use_camera_intrinsics"))
    tags = ["depth-anything-v2", "depth-estimation", "metric-depth" if max_depth is not None else "relative-depth"]
    tags += ["camera-intrinsics"] if camera else []
    output = (
        f"metric depth in metres, up to {max_depth:g} m"
        if max_depth is not None
        else "relative disparity (affine-invariant inverse depth: larger is nearer, no unit)"
    )
    camera_row = (
        f"the intrinsics K enter the backbone after block {config.get('cam_token_inject_layer', 0)} "
        "(`cam_token_inject_layer`); without K the learned null camera is used"
        if camera
        else "none (the model does not take intrinsics)"
    )
    layout = (
        "transformers (`DepthAnythingForDepthEstimation`)"
        if transformers_format
        else "Depth Anything V2 with camera intrinsics (config.json `model_config`, model.safetensors)"
    )
    lines = [
        "---",
        f"library_name: {'transformers' if transformers_format else 'pytorch'}",
        "pipeline_tag: depth-estimation",
        "license: other  # placeholder: the licence of the starting weights and of the training data "
        "(official Depth Anything V2: Small Apache-2.0, Base/Large CC-BY-NC-4.0)",
        f"tags:{_yaml_list(tags)}",
        "---",
        "",
        f"# {repo_id.split('/')[-1]}",
        "",
        f"Depth Anything V2 ({ENCODER_NAMES.get(encoder, encoder)}){' with a camera encoder' if camera else ''}.",
        "",
        "| Setting | Value |",
        "|---|---|",
        f"| Encoder | `{encoder}` |",
        f"| Output | {output} |",
        f"| Camera | {camera_row} |",
        f"| Format | {layout} |",
        "",
        "## Training",
        "",
        f"- Datasets: {', '.join(f'`{d}`' for d in training.get('datasets', [])) or 'not recorded'}",
    ]
    if training.get("pretrained_from"):
        lines.append(f"- Started from: `{training['pretrained_from']}`")
    if training.get("iterations") is not None:
        lines.append(f"- Iterations: {training['iterations']}")
    lines += ["", "## Evaluation", ""]
    metrics = training.get("metrics") or {}
    if metrics:
        lines += [f"Last evaluation of the run (metrics.jsonl, iteration {training.get('metrics_step', '?')}):", ""]
        lines += ["| Metric | Value |", "|---|---|", *(f"| {k} | {v:.4g} |" for k, v in metrics.items())]
    else:
        lines.append("Not recorded.")
    intrinsics = ", intrinsics=K)  # K: 3x3, pixels of the photo" if camera else ")"
    lines += [
        "",
        "## Use",
        "",
        "With the code of Depth Anything V2 with camera intrinsics (`pip install -e .` in its clone):",
        "",
        "```python",
        "import cv2",
        "from depth_anything_v2.dpt import DepthAnythingV2",
        "",
        f'model = DepthAnythingV2.from_pretrained("{repo_id}")',
        f'depth = model.infer_image(cv2.imread("photo.jpg"), input_size=518{intrinsics}',
        "```",
        "",
        "```bash",
        f"python run.py --load-from {repo_id} --img-path photos/ --outdir depth/"
        + (" --intrinsics fx,fy,cx,cy" if camera else ""),
        "```",
    ]
    if transformers_format:
        lines += [
            "",
            "With transformers:",
            "",
            "```python",
            "from PIL import Image",
            "from transformers import pipeline",
            "",
            f'depth = pipeline("depth-estimation", model="{repo_id}")(Image.open("photo.jpg"))["predicted_depth"]',
            "```",
        ]
    return "\n".join(lines) + "\n"
