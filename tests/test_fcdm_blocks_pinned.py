"""The FCDM block and GRN (models/fcdm_blocks.py): widths, defaults, checkpoint keys, dtypes, eps."""

import pytest
import torch
from fixtures.errors import error_message

from diffusers_mdiffae.models.fcdm_blocks import GRN, FCDMBlock


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


def test_the_defaults_are_mlp_ratio_4_a_7x7_depthwise_conv_and_layer_scale_1e_3():
    block = FCDMBlock(4)
    assert block.pwconv1.out_channels == 16 and block.pwconv2.in_channels == 16
    assert block.dwconv.kernel_size == (7, 7) and block.dwconv.padding == (3, 3)
    assert block.layer_scale.dtype == torch.float32
    assert torch.equal(block.layer_scale.data, torch.full((4,), 1e-3))


def test_a_hidden_width_below_one_is_raised_to_exactly_one():
    block = FCDMBlock(2, 0.25, depthwise_kernel_size=3)
    assert block.pwconv1.out_channels == 1
    assert block.grn.gamma.shape == (1, 1, 1, 1)


def test_grn_parameters_are_checkpoint_keys_of_shape_1_c_1_1():
    sd = GRN(3).state_dict()
    assert sorted(sd) == ["beta", "gamma"]
    assert sd["gamma"].shape == (1, 3, 1, 1) and sd["beta"].shape == (1, 3, 1, 1)


def test_a_conditioned_block_has_no_layer_scale_key_but_a_layer_scale_of_none():
    """Strict loading of a decoder checkpoint fails on any extra key."""
    block = FCDMBlock(4, 2.0, depthwise_kernel_size=3, use_external_adaln=True)
    assert block.layer_scale is None
    assert sorted(block.state_dict()) == [
        "dwconv.bias",
        "dwconv.weight",
        "grn.beta",
        "grn.gamma",
        "pwconv1.bias",
        "pwconv1.weight",
        "pwconv2.bias",
        "pwconv2.weight",
    ]


def test_a_conditioned_block_without_adaln_m_is_refused():
    block = FCDMBlock(4, 2.0, depthwise_kernel_size=3, use_external_adaln=True)
    msg = error_message(block, torch.zeros(1, 4, 3, 3))
    assert msg == "this FCDMBlock is conditioned: pass adaln_m of shape [B, 2*C]"


def test_a_float32_adaln_m_is_cast_to_a_bfloat16_inputs_dtype():
    """The conditioning MLP may run in float32 while the blocks run in bfloat16."""
    torch.manual_seed(2)
    block = FCDMBlock(4, 2.0, depthwise_kernel_size=3, use_external_adaln=True).to(torch.bfloat16)
    x = torch.randn(2, 4, 3, 3).to(torch.bfloat16)
    m = torch.randn(2, 8)
    with torch.no_grad():
        out = block(x, m)
        scale = m[:, :4].to(torch.bfloat16)[:, :, None, None]
        gate = m[:, 4:].to(torch.bfloat16)[:, :, None, None]
        h = block.norm(block.dwconv(x)) * (1.0 + scale)
        h = block.pwconv2(block.grn(torch.nn.functional.gelu(block.pwconv1(h))))
    assert out.dtype == torch.bfloat16
    assert torch.equal(out, x + gate * h)


@pytest.mark.parametrize("channels_last", [False, True])
def test_grn_with_float32_parameters_keeps_a_bfloat16_input_dtype(channels_last):
    """diffusers' layerwise casting keeps ``grn`` in float32 (``_skip_layerwise_casting_patterns``)."""
    torch.manual_seed(3)
    grn = GRN(3)
    grn.gamma.data = torch.tensor([0.5, -1.0, 2.0]).view(1, 3, 1, 1)
    grn.beta.data = torch.tensor([0.25, 0.0, -0.5]).view(1, 3, 1, 1)
    x = torch.randn(2, 3, 4, 4).to(torch.bfloat16)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    assert x.is_contiguous() is not channels_last
    with torch.no_grad():
        out = grn(x)
    assert out.dtype == torch.bfloat16
    xf = x.double()
    g = xf.square().sum(dim=(2, 3), keepdim=True).sqrt()
    want = grn.gamma.double() * xf * (g / (g.mean(dim=1, keepdim=True) + 1e-6)) + grn.beta.double() + xf
    torch.testing.assert_close(out.double(), want, atol=0.05, rtol=0.02)


@pytest.mark.parametrize("channels_last", [False, True])
def test_grn_adds_eps_to_the_mean_channel_norm(channels_last):
    """``n = g / (mean_c g + eps)``: with eps 1 and a mean norm of 0.5 the gain is a third of g's."""
    grn = GRN(2, eps=1.0)
    grn.gamma.data = torch.ones(1, 2, 1, 1)
    # Channel 0 has spatial L2 norm 0.6, channel 1 has 0.4: the mean is 0.5.
    x = torch.tensor([[[[0.6, 0.0], [0.0, 0.0]], [[0.0, 0.0], [0.0, 0.4]]]])
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    assert x.is_contiguous() is not channels_last
    with torch.no_grad():
        out = grn(x)
    n = torch.tensor([0.6, 0.4]).view(1, 2, 1, 1) / 1.5
    torch.testing.assert_close(out, x * n + x)
