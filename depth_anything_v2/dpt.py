"""Depth Anything V2: DINOv2 backbone + DPT head, relative (max_depth=None) or metric, with an optional camera
encoder. Key names and numerics are those of the official release.

    from depth_anything_v2.dpt import DepthAnythingV2
    model = DepthAnythingV2(encoder='vitl', max_depth=20.0)
    model.load_state_dict(torch.load('checkpoints/depth_anything_v2_metric_hypersim_vitl.pth', weights_only=True))
    depth = model.infer_image(cv2.imread('image.jpg'), input_size=518)   # (H, W) metres

    model = DepthAnythingV2.from_pretrained('depth-anything/Depth-Anything-V2-Metric-Hypersim-Large')  # the same
    model.save_pretrained('my-model')    # a folder to share (transformers' format when it has no camera)
"""

from __future__ import annotations

import os
from functools import partial

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .blocks import FeatureFusionBlock, _make_scratch
from .camera import CameraEncoder
from .configs import IMAGENET_MEAN, IMAGENET_STD, INTERMEDIATE_LAYER_IDX, MODEL_CONFIGS, PATCH_SIZE
from .dinov2 import build_dinov2
from .geometry import canonical_intrinsics, scale_intrinsics, validate_intrinsics
from .preprocess import prepare_image
from .pretrained import load_weights, read_checkpoint, resolve_model_config, write_model_folder


class DPTHead(nn.Module):
    """Reassemble four token maps into an image pyramid, fuse it coarse to fine, and predict one channel.

    Args:
        in_channels: backbone token width C.
        features: fusion width.
        out_channels: per-level widths after the 1x1 projections.
        metric: Sigmoid output (metric depth / max_depth) instead of ReLU (relative disparity).

    Attribute `channels_last` (default True): run the convolutions on channels-last activations, oneDNN's native
    layout on CPU; False keeps NCHW. The scripts set it to the layout timed faster on the machine
    (`depth_anything_v2.kernels.tune_kernels`).

    Attribute `fp32_island_in_training` (default False): under bf16/fp16 autocast the last convolutions and the
    activation run in fp32 in eval mode, so that reduced-precision depth stays within 0.5 % of fp32; in training
    mode they follow autocast unless this is True (`train.py --fp32-head-island`): with and without it, training
    results differed by less than their seed noise (docs/PERFORMANCE.md), and the fp32 pass at full resolution is
    a large part of a bf16 step's cost on CPU.
    """

    def __init__(
        self,
        in_channels: int,
        features: int = 256,
        use_bn: bool = False,
        out_channels: list[int] = (256, 512, 1024, 1024),
        use_clstoken: bool = False,
        metric: bool = False,
    ) -> None:
        super().__init__()
        self.use_clstoken = use_clstoken
        self.channels_last = True
        self.fp32_island_in_training = False
        self.projects = nn.ModuleList(nn.Conv2d(in_channels, c, kernel_size=1) for c in out_channels)
        self.resize_layers = nn.ModuleList(
            [
                nn.ConvTranspose2d(out_channels[0], out_channels[0], kernel_size=4, stride=4),
                nn.ConvTranspose2d(out_channels[1], out_channels[1], kernel_size=2, stride=2),
                nn.Identity(),
                nn.Conv2d(out_channels[3], out_channels[3], kernel_size=3, stride=2, padding=1),
            ]
        )
        if use_clstoken:
            self.readout_projects = nn.ModuleList(
                nn.Sequential(nn.Linear(2 * in_channels, in_channels), nn.GELU()) for _ in out_channels
            )
        self.scratch = _make_scratch(list(out_channels), features)
        for i in range(1, 5):
            setattr(self.scratch, f"refinenet{i}", FeatureFusionBlock(features, use_bn))
        # refinenet4 fuses no skip feature, so its resConfUnit1 never runs: frozen, so DDP needs no
        # find_unused_parameters (its weights are still loaded and saved for strict compatibility).
        self.scratch.refinenet4.resConfUnit1.requires_grad_(False)
        self.scratch.output_conv1 = nn.Conv2d(features, features // 2, kernel_size=3, padding=1)
        final = [nn.Sigmoid()] if metric else [nn.ReLU(True), nn.Identity()]
        self.scratch.output_conv2 = nn.Sequential(
            nn.Conv2d(features // 2, 32, kernel_size=3, padding=1),
            nn.ReLU(True),
            nn.Conv2d(32, 1, kernel_size=1),
            *final,
        )

    def forward(self, out_features: tuple, patch_h: int, patch_w: int) -> Tensor:
        """out_features: 4 x ((B, N, C) patch tokens, (B, C) class token) -> (B, 1, 14 patch_h, 14 patch_w)."""
        layout = torch.channels_last if self.channels_last else torch.contiguous_format
        levels = []
        for i, (x, cls_token) in enumerate(out_features):
            if self.use_clstoken:
                x = self.readout_projects[i](torch.cat([x, cls_token[:, None].expand_as(x)], dim=-1))
            x = x.permute(0, 2, 1).reshape(x.shape[0], x.shape[-1], patch_h, patch_w)
            # Later convolutions and interpolations keep the layout of their input.
            levels.append(self.resize_layers[i](self.projects[i](x).contiguous(memory_format=layout)))
        l1, l2, l3, l4 = (getattr(self.scratch, f"layer{i}_rn")(x) for i, x in enumerate(levels, start=1))
        path = self.scratch.refinenet4(l4, size=l3.shape[2:])
        path = self.scratch.refinenet3(path, l3, size=l2.shape[2:])
        path = self.scratch.refinenet2(path, l2, size=l1.shape[2:])
        path = self.scratch.refinenet1(path, l1)
        out = self.scratch.output_conv1(path)
        out = F.interpolate(out, (patch_h * PATCH_SIZE, patch_w * PATCH_SIZE), mode="bilinear", align_corners=True)
        if self.training and not self.fp32_island_in_training:
            return self.scratch.output_conv2(out).float()
        # The last convolutions and the activation run in fp32 so bf16 autocast does not quantize depth.
        with torch.autocast(out.device.type, enabled=False):
            return self.scratch.output_conv2(out.float())


class DepthAnythingV2(nn.Module):
    """Depth Anything V2 with optional camera conditioning.

    Args:
        encoder: 'vits' | 'vitb' | 'vitl' | 'vitg'.
        features, out_channels: DPT widths; default to MODEL_CONFIGS[encoder].
        max_depth: None for the relative model (ReLU head, disparity-like output), or the metric range in
            metres (Sigmoid x max_depth head; 20 for Hypersim, 80 for Virtual KITTI).
        use_camera_intrinsics: add the camera encoder (keys under `cam_encoder.`).
        cam_token_inject_layer: first backbone block (0-based) whose output receives camera information.
        cam_num_blocks: transformer blocks in the camera token encoder.
    """

    def __init__(
        self,
        encoder: str = "vitl",
        features: int | None = None,
        out_channels: list[int] | None = None,
        use_bn: bool = False,
        use_clstoken: bool = False,
        max_depth: float | None = None,
        use_camera_intrinsics: bool = False,
        cam_token_inject_layer: int = 0,
        cam_num_blocks: int = 2,
    ) -> None:
        super().__init__()
        if encoder not in MODEL_CONFIGS:
            raise ValueError(f"unknown encoder {encoder!r}; choose one of {sorted(MODEL_CONFIGS)}")
        features = features or MODEL_CONFIGS[encoder]["features"]
        out_channels = list(out_channels or MODEL_CONFIGS[encoder]["out_channels"])
        self.encoder = encoder
        self.max_depth = None if max_depth is None else float(max_depth)
        self.intermediate_layer_idx = INTERMEDIATE_LAYER_IDX
        self.config = {
            "encoder": encoder,
            "features": features,
            "out_channels": out_channels,
            "use_bn": use_bn,
            "use_clstoken": use_clstoken,
            "max_depth": self.max_depth,
            "use_camera_intrinsics": use_camera_intrinsics,
            "cam_token_inject_layer": cam_token_inject_layer,
            "cam_num_blocks": cam_num_blocks,
        }
        self.pretrained = build_dinov2(encoder)
        self.depth_head = DPTHead(
            self.pretrained.embed_dim, features, use_bn, out_channels, use_clstoken, metric=max_depth is not None
        )
        self.cam_encoder = None
        if use_camera_intrinsics:
            self.cam_encoder = CameraEncoder(
                self.pretrained.embed_dim,
                self.pretrained.blocks[0].attn.num_heads,
                len(self.pretrained.blocks),
                cam_token_inject_layer,
                cam_num_blocks,
            )
        self.register_buffer("image_mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("image_std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    @classmethod
    def from_pretrained(
        cls,
        name_or_path: str | os.PathLike,
        revision: str | None = None,
        cache_dir: str | os.PathLike | None = None,
        max_depth: float | None = None,
    ) -> DepthAnythingV2:
        """A model with its weights, from any checkpoint: a .pth/.pt/.safetensors file, a folder of
        `save_pretrained` or in transformers' format, or a Hugging Face hub name (`depth_anything_v2.hub`).

        Encoder, metric range and camera settings come from the checkpoint or its config; a bare official file
        gives the encoder by its weights and metric or relative by its name.

        Args:
            name_or_path: the checkpoint.
            revision: branch, tag or commit of a hub repository (default: main).
            cache_dir: hub cache folder (default: huggingface_hub's).
            max_depth: metric range in metres, for a bare official metric file only (its name does not say it).

        Returns:
            The model in eval mode, on the CPU.

        Raises:
            CheckpointError: the checkpoint cannot be read or fetched, or does not say what is needed.
        """
        checkpoint = read_checkpoint(name_or_path, revision, cache_dir)
        model = cls(**resolve_model_config(name_or_path, checkpoint, max_depth=max_depth))
        load_weights(model, checkpoint)
        return model.eval()

    def save_pretrained(
        self, folder: str | os.PathLike, training: dict | None = None, repo_id: str | None = None
    ) -> str:
        """Write the model to `folder` for sharing; `from_pretrained(folder)` reads it back exactly.

        Without a camera encoder the folder is in transformers' format (`DepthAnythingForDepthEstimation` and
        its depth-estimation pipeline load it); with one, in this repo's format. Both hold config.json,
        model.safetensors and a model card, README.md (`pretrained.write_model_folder`).

        Args:
            folder: the folder (created if needed).
            training: datasets, iterations and last evaluation metrics for the card (`model_card.model_card`).
            repo_id: the hub name the card's load commands use (default: your-name/<folder name>).

        Returns:
            The format written: 'transformers' or 'depth_anything_v2_intrinsics'.
        """
        return write_model_folder(folder, self.config, self.state_dict(), training, repo_id)

    def set_grad_checkpointing(self, enabled: bool = True) -> None:
        """Recompute backbone block activations in the backward pass: less memory, about one more forward."""
        self.pretrained.grad_checkpointing = enabled

    def _first_block_needing_grad(self) -> int:
        """Blocks before this index need no autograd: the backbone is frozen and no camera signal enters yet."""
        if not torch.is_grad_enabled() or any(p.requires_grad for p in self.pretrained.parameters()):
            return 0
        if self.cam_encoder is not None:
            return self.cam_encoder.inject_layer
        return len(self.pretrained.blocks)

    def forward(self, x: Tensor, intrinsics: Tensor | None = None, has_intrinsics: Tensor | None = None) -> Tensor:
        """Predict depth.

        Args:
            x: (B, 3, H, W) ImageNet-normalized RGB, H and W multiples of 14.
            intrinsics: (B, 3, 3) K in pixels of x (OpenCV pixel centres); ignored without a camera encoder.
            has_intrinsics: (B,) bool, which rows of `intrinsics` are real (default: all when given, none if
                `intrinsics` is None); rows without use the learned null camera.

        Returns:
            (B, H, W) float32: metres for a metric model, relative disparity otherwise.
        """
        B, _, H, W = x.shape
        patch_h, patch_w = H // PATCH_SIZE, W // PATCH_SIZE
        hook, offset = None, None
        if self.cam_encoder is not None:
            intrinsics, has_intrinsics = self._camera_inputs(intrinsics, has_intrinsics, B, H, W, x.device)
            tokens = self.cam_encoder.tokens(intrinsics, has_intrinsics, H, W)
            hook = partial(self.cam_encoder.inject, tokens=tokens)
            offset = self.cam_encoder.log_depth_offset(intrinsics, has_intrinsics, H, W)
        features = self.pretrained.get_intermediate_layers(
            x,
            self.intermediate_layer_idx[self.encoder],
            return_class_token=True,
            after_block=hook,
            grad_from_block=self._first_block_needing_grad(),
        )
        out = self.depth_head(features, patch_h, patch_w).squeeze(1)
        depth = out * self.max_depth if self.max_depth is not None else F.relu(out)
        if offset is not None:
            # Metric depth scales with exp(offset); relative output is disparity, which scales inversely.
            sign = 1.0 if self.max_depth is not None else -1.0
            depth = depth * torch.exp(sign * offset)[:, None, None]
        return depth

    @staticmethod
    def _camera_inputs(
        intrinsics: Tensor | None, has_intrinsics: Tensor | None, B: int, H: int, W: int, device: torch.device
    ) -> tuple[Tensor, Tensor]:
        if intrinsics is None:
            K = torch.as_tensor(canonical_intrinsics(H, W), dtype=torch.float32, device=device)
            return K.expand(B, 3, 3), torch.zeros(B, dtype=torch.bool, device=device)
        if intrinsics.shape != (B, 3, 3):
            raise ValueError(
                f"intrinsics must have shape ({B}, 3, 3) for a batch of {B}, got {tuple(intrinsics.shape)}"
            )
        if has_intrinsics is None:
            has_intrinsics = torch.ones(B, dtype=torch.bool, device=device)
        return intrinsics.to(device), has_intrinsics.to(device=device, dtype=torch.bool)

    def image2tensor(self, raw_image: np.ndarray, input_size: int = 518) -> tuple[Tensor, tuple[int, int]]:
        """(h, w, 3) uint8 BGR -> ((1, 3, H, W) float32 on the model's device, (h, w))."""
        image = torch.from_numpy(prepare_image(raw_image, input_size)).unsqueeze(0)
        return image.to(self.image_mean.device), raw_image.shape[:2]

    @torch.inference_mode()
    def infer_image(
        self, raw_image: np.ndarray, input_size: int = 518, intrinsics: np.ndarray | None = None
    ) -> np.ndarray:
        """Depth of one image at its own resolution.

        Args:
            raw_image: (h, w, 3) uint8 BGR (as from cv2.imread).
            input_size: short side of the network input (the long side keeps the aspect ratio), multiple of 14.
            intrinsics: optional (3, 3) K in pixels of `raw_image`, OpenCV convention; mapped to the network input.

        Returns:
            (h, w) float32 numpy: metres for a metric model, relative disparity otherwise.

        Raises:
            ValueError: `intrinsics` is not a finite 3x3 K with positive focal lengths and last row [0, 0, 1].
        """
        image, (h, w) = self.image2tensor(raw_image, input_size)
        K = None
        if intrinsics is not None:
            problem = validate_intrinsics(intrinsics)
            if problem:
                raise ValueError(f"infer_image: {problem} (K in pixels of raw_image, [[fx,0,cx],[0,fy,cy],[0,0,1]])")
            K_net = scale_intrinsics(np.asarray(intrinsics, dtype=np.float64), image.shape[-1] / w, image.shape[-2] / h)
            K = torch.as_tensor(K_net, dtype=torch.float32, device=image.device)[None]
        depth = self(image, K)  # through __call__: runs the compiled forward after model.compile()
        depth = F.interpolate(depth[:, None].float(), (h, w), mode="bilinear", align_corners=True)[0, 0]
        return depth.cpu().numpy()
