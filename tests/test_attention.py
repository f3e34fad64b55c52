"""The model's speed paths keep results: explicit vs SDPA attention, activation checkpointing."""

import pytest
import torch

from depth_anything_v2 import DepthAnythingV2
from depth_anything_v2.dinov2_layers import Attention, attention


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_explicit_attention_matches_sdpa(monkeypatch, dtype):
    torch.manual_seed(0)
    q, k, v = torch.randn(3, 2, 2, 50, 16, dtype=dtype)
    # 6 KiB of scores per chunk: 50 queries x 50 keys x 2 heads x 2 images -> several chunks, uneven last one.
    monkeypatch.setattr(attention, "EXPLICIT_CHUNK_BYTES", 6 * 1024)
    expected = torch.nn.functional.scaled_dot_product_attention(q.float(), k.float(), v.float())
    out = attention.explicit_attention(q, k, v)
    assert out.dtype == dtype
    tol = 1e-5 if dtype == torch.float32 else 2e-2
    torch.testing.assert_close(out.float(), expected, atol=tol, rtol=tol)


def test_attention_auto_uses_explicit_path_for_bf16_on_cpu(monkeypatch):
    calls = []
    monkeypatch.setattr(attention, "explicit_attention", lambda *a: calls.append(a[0].dtype) or a[2])
    layer = Attention(32, num_heads=4).eval()
    x = torch.randn(1, 10, 32)
    layer(x)
    assert calls == []
    with torch.autocast("cpu", dtype=torch.bfloat16):
        layer(x)
    assert calls == [torch.bfloat16]
    with pytest.raises(ValueError, match="attention impl"):
        Attention(32, impl="flash")


@pytest.mark.parametrize("frozen, inject", [(False, 0), (True, 6)])
def test_grad_checkpointing_gives_equal_gradients(vits_weights, frozen, inject):
    torch.manual_seed(0)
    model = DepthAnythingV2("vits", max_depth=20.0, use_camera_intrinsics=True, cam_token_inject_layer=inject)
    model.load_state_dict(vits_weights, strict=False)
    model.pretrained.requires_grad_(not frozen)
    model.pretrained.mask_token.requires_grad_(False)
    for p in model.cam_encoder.parameters():  # non-zero camera adapters, so the camera path carries gradient
        p.data.add_(torch.randn_like(p) * 1e-2)
    model.train()
    x = torch.randn(1, 3, 70, 84)
    K = torch.tensor([[[80.0, 0, 41.5], [0, 80.0, 34.5], [0, 0, 1]]])

    def grads(enabled: bool) -> dict:
        model.zero_grad(set_to_none=True)
        model.set_grad_checkpointing(enabled)
        model(x, K).log().square().mean().backward()
        return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    plain, checkpointed = grads(False), grads(True)
    assert model.pretrained.grad_checkpointing
    assert any(n.startswith("pretrained.blocks.") for n in plain) == (not frozen)
    assert any(n.startswith("cam_encoder.adapters.11") for n in plain)
    assert plain.keys() == checkpointed.keys()
    torch.testing.assert_close(checkpointed, plain, rtol=1e-5, atol=1e-7)
