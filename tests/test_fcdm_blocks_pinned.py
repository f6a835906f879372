"""The FCDM block (models/fcdm_blocks.py): its width, its non-affine RMS norm and that norm's eps."""

import torch

from diffusers_mdiffae.models.fcdm_blocks import FCDMBlock


def test_the_block_keeps_its_width_and_a_non_affine_norm_with_the_given_eps():
    block = FCDMBlock(8, 2.0, depthwise_kernel_size=3, norm_eps=1e-3)
    assert block.channels == 8
    assert repr(block.norm) == "ChannelWiseRMSNorm(8, eps=0.001, affine=False)"
    assert block.norm.weight is None and not any(k.startswith("norm.") for k in block.state_dict())
    assert repr(FCDMBlock(4).norm) == "ChannelWiseRMSNorm(4, eps=1e-06, affine=False)"


def test_the_norm_eps_reaches_the_output():
    """``norm(dwconv(x))`` with ``rsqrt(mean square + eps)``: a large eps shrinks a small input's branch."""
    torch.manual_seed(0)
    block = FCDMBlock(4, 2.0, depthwise_kernel_size=3, norm_eps=1.0)
    x = torch.randn(1, 4, 5, 5) * 1e-2
    with torch.no_grad():
        d = block.dwconv(x)
        want = d * torch.rsqrt(d.square().mean(dim=1, keepdim=True) + 1.0)
        torch.testing.assert_close(block.norm(d), want)
        same = FCDMBlock(4, 2.0, depthwise_kernel_size=3, norm_eps=1e-6)
        same.load_state_dict(block.state_dict())
        assert not torch.allclose(same(x), block(x))


def test_a_float32_layer_scale_does_not_promote_a_half_precision_output():
    """diffusers' layerwise casting keeps ``layer_scale`` in float32 (``_skip_layerwise_casting_patterns``)."""
    torch.manual_seed(1)
    block = FCDMBlock(4, 2.0, depthwise_kernel_size=3).to(torch.bfloat16)
    block.layer_scale.data = torch.full((4,), 0.5)
    assert block.layer_scale.dtype == torch.float32
    x = torch.randn(1, 4, 5, 5).to(torch.bfloat16)
    with torch.no_grad():
        out = block(x)
        h = block.pwconv2(block.grn(torch.nn.functional.gelu(block.pwconv1(block.norm(block.dwconv(x))))))
    assert out.dtype == torch.bfloat16
    assert torch.equal(out, x + torch.tensor(0.5, dtype=torch.bfloat16) * h)
