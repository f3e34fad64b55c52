"""Camera encoder invariants: exact identity at initialisation, gradients, batch independence, resolution
independence of the intrinsics features, the folded cross-attention, and no autograd below the inject layer of a
frozen backbone."""

import pytest
import torch
import torch.nn.functional as F

from depth_anything_v2 import DepthAnythingV2
from depth_anything_v2.camera import CameraEncoder, camera_features

H, W = 70, 98


def random_K(batch, generator):
    f = 40 + 80 * torch.rand(batch, 2, generator=generator)
    c = torch.tensor([W / 2, H / 2]) + 5 * torch.randn(batch, 2, generator=generator)
    K = torch.zeros(batch, 3, 3)
    K[:, 0, 0], K[:, 1, 1], K[:, 0, 2], K[:, 1, 2], K[:, 2, 2] = f[:, 0], f[:, 1], c[:, 0], c[:, 1], 1
    return K


@pytest.fixture(scope="module")
def official(vits_weights):
    model = DepthAnythingV2("vits", max_depth=20.0).eval()
    model.load_state_dict(vits_weights)
    return model


@pytest.mark.parametrize("inject_layer", [0, 6])
def test_identity_at_initialisation(official, vits_weights, inject_layer):
    student = DepthAnythingV2("vits", max_depth=20.0, use_camera_intrinsics=True, cam_token_inject_layer=inject_layer)
    student.load_state_dict(vits_weights, strict=False)
    student.eval()
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, 3, H, W, generator=g)
    K = random_K(3, g)
    with torch.no_grad():
        reference = official(x)
        torch.testing.assert_close(student(x, K), reference, rtol=1e-6, atol=0)
        torch.testing.assert_close(student(x), reference, rtol=1e-6, atol=0)
        mixed = torch.tensor([True, False, True])
        torch.testing.assert_close(student(x, K, mixed), reference, rtol=1e-6, atol=0)


def test_every_camera_parameter_gets_gradients_by_step_two(vits_weights):
    torch.manual_seed(0)
    model = DepthAnythingV2("vits", max_depth=20.0, use_camera_intrinsics=True, cam_token_inject_layer=4)
    model.load_state_dict(vits_weights, strict=False)
    model.pretrained.requires_grad_(False)
    camera_params = dict(model.cam_encoder.named_parameters())
    optimizer = torch.optim.AdamW(camera_params.values(), lr=1e-3)
    g = torch.Generator().manual_seed(1)
    x, K = torch.randn(2, 3, H, W, generator=g), random_K(2, g)
    has_K = torch.tensor([True, False])
    target = torch.rand(2, H, W, generator=g) * 10 + 1
    for step in range(2):
        optimizer.zero_grad(set_to_none=True)
        loss = (model(x, K, has_K).log() - target.log()).pow(2).mean()
        loss.backward()
        if step == 0:
            assert model.cam_encoder.adapters["4"].out.weight.grad.abs().sum() > 0
        optimizer.step()
    dead = [name for name, p in camera_params.items() if p.grad is None or p.grad.abs().sum() == 0]
    assert not dead, f"camera parameters without gradient after two steps: {dead}"


def test_sample_output_does_not_depend_on_the_batch(vits_weights):
    torch.manual_seed(0)
    model = DepthAnythingV2("vits", max_depth=20.0, use_camera_intrinsics=True).eval()
    model.load_state_dict(vits_weights, strict=False)
    for adapter in model.cam_encoder.adapters.values():
        torch.nn.init.normal_(adapter.out.weight, std=0.05)
    model.cam_encoder.focal_weight.data.fill_(0.5)
    g = torch.Generator().manual_seed(2)
    x, K = torch.randn(3, 3, H, W, generator=g), random_K(3, g)
    with torch.no_grad():
        alone_with_K = model(x[:1], K[:1])
        alone_without_K = model(x[1:2])
        batch = model(x, K, torch.tensor([True, False, True]))
    torch.testing.assert_close(batch[:1], alone_with_K, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(batch[1:2], alone_without_K, rtol=1e-5, atol=1e-6)
    assert (batch[0] - model(x[:1], K[1:2]).detach()).abs().max() > 1e-4, "K must change the output once trained"


def test_camera_features_do_not_depend_on_resolution():
    g = torch.Generator().manual_seed(3)
    K = random_K(4, g)
    scale = 2.0
    K_big = K.clone()
    K_big[:, :2, :2] *= scale
    K_big[:, :2, 2] = scale * (K[:, :2, 2] + 0.5) - 0.5
    small = camera_features(K, H, W)
    big = camera_features(K_big, int(H * scale), int(W * scale))
    for a, b in zip(small, big):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_inject_layer_outside_backbone_is_rejected():
    with pytest.raises(ValueError, match="cam_token_inject_layer=12 is outside the backbone's blocks 0..11"):
        DepthAnythingV2("vits", use_camera_intrinsics=True, cam_token_inject_layer=12)


def test_frozen_blocks_before_inject_layer_run_without_autograd():
    model = DepthAnythingV2("vits", max_depth=20.0, use_camera_intrinsics=True, cam_token_inject_layer=5)
    model.pretrained.requires_grad_(False)
    tracks_grad = {}
    for i, block in enumerate(model.pretrained.blocks):
        block.register_forward_hook(lambda m, inp, out, i=i: tracks_grad.__setitem__(i, out.requires_grad))
    model(torch.randn(1, 3, H, W), random_K(1, torch.Generator().manual_seed(0))).sum().backward()
    assert [i for i, g in tracks_grad.items() if g] == list(range(6, 12))
    assert not any(tracks_grad[i] for i in range(5))


def projected_cross_attention(encoder: CameraEncoder, block: int, x: torch.Tensor, tokens: torch.Tensor):
    """x + W_o MHA(W_q LN(x), W_k T, W_v T): the cross-attention as specified, with every token projected."""
    adapter = encoder.adapters[str(block)]
    B, N, C = x.shape
    heads = encoder.num_heads
    q = encoder.to_q(adapter.norm(x)).reshape(B, N, heads, C // heads).transpose(1, 2)
    k, v = encoder.to_kv(tokens).reshape(B, -1, 2, heads, C // heads).permute(2, 0, 3, 1, 4)
    return x + adapter.out(F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(B, N, C))


def test_folded_cross_attention_equals_the_projected_form():
    torch.manual_seed(0)
    encoder = CameraEncoder(64, num_heads=4, depth=3, inject_layer=1)
    for adapter in encoder.adapters.values():  # non-zero output projections (zero at initialisation)
        torch.nn.init.normal_(adapter.out.weight, std=0.1)
        torch.nn.init.normal_(adapter.out.bias, std=0.1)
    x, tokens = torch.randn(2, 30, 64, requires_grad=True), torch.randn(2, 10, 64)
    folded, projected = encoder.inject(2, x, tokens), projected_cross_attention(encoder, 2, x, tokens)
    assert (projected - x).abs().max() > 0.1
    torch.testing.assert_close(folded, projected, atol=2e-6, rtol=1e-5)
    grads = torch.autograd.grad(folded.square().sum(), [x, encoder.to_q.weight, encoder.adapters["2"].out.weight])
    expected = torch.autograd.grad(projected.square().sum(), [x, encoder.to_q.weight, encoder.adapters["2"].out.weight])
    for got, want in zip(grads, expected):
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-4)
    assert encoder.inject(0, x, tokens) is x  # below the inject layer
