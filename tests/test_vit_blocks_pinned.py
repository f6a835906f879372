"""The mixed 2-D rotary embedding of the tokenizers' ViTs (models/vit_blocks.py), against its definition.

``init_mixed_rope_freqs``' docstring: per layer and head a random direction ``a``, magnitudes
``theta ** (-4 j / head_dim)``; the x plane holds ``mag * cos(a)`` then ``mag * cos(a + pi/2)``, the y
plane ``mag * sin(a)`` then ``mag * sin(a + pi/2)``. The expected values below are computed from that
sentence with ``math``, one number at a time.
"""

import math

import pytest
import torch
from fixtures.dtypes import default_dtype
from fixtures.errors import error_message

from diffusers_mdiffae.models.vit_blocks import (
    Attention,
    LayerScale,
    MixedRoPE2D,
    PatchEmbed,
    ViTBlock,
    grid_coordinates,
    init_mixed_rope_freqs,
)


def expected_freqs(head_dim, num_heads, depth, theta, angles):
    quarter = head_dim // 4
    fx = torch.zeros(depth, num_heads * head_dim // 2, dtype=torch.float64)
    fy = torch.zeros_like(fx)
    for d in range(depth):
        for h in range(num_heads):
            a = float(angles[d, h])
            for j in range(quarter):
                mag = theta ** (-4 * j / head_dim)
                base = h * head_dim // 2
                fx[d, base + j] = mag * math.cos(a)
                fx[d, base + quarter + j] = mag * math.cos(a + math.pi / 2)
                fy[d, base + j] = mag * math.sin(a)
                fy[d, base + quarter + j] = mag * math.sin(a + math.pi / 2)
    return torch.stack([fx, fy])


@pytest.mark.parametrize("head_dim, num_heads, depth, theta", [(8, 2, 3, 10.0), (16, 3, 2, 100.0), (4, 1, 1, 10.0)])
def test_initial_frequencies_follow_the_definition(head_dim, num_heads, depth, theta):
    torch.manual_seed(0)
    angles = torch.rand(depth, num_heads, 1)[..., 0] * (2 * math.pi)  # the one random draw, in its order
    torch.manual_seed(0)
    freqs = init_mixed_rope_freqs(head_dim, num_heads, depth, theta)
    assert freqs.shape == (2, depth, num_heads * head_dim // 2) and freqs.dtype == torch.float32
    want = expected_freqs(head_dim, num_heads, depth, theta, angles)
    torch.testing.assert_close(freqs.double(), want, rtol=1e-6, atol=1e-6)


def test_initial_frequencies_are_made_in_the_default_dtype_at_its_precision():
    """Like any parameter torch creates: a float64 default gives float64 frequencies, exact to float64."""
    with default_dtype(torch.float64):
        freqs = init_mixed_rope_freqs(16, 1, 1, 10.0)
    assert freqs.dtype == torch.float64
    mags = torch.hypot(freqs[0], freqs[1]).view(2, 4)
    want = torch.tensor([10.0 ** (-4 * j / 16) for j in range(4)], dtype=torch.float64)
    torch.testing.assert_close(mags, want.expand(2, 4), rtol=1e-14, atol=0)


def test_a_rotary_embedding_built_with_its_defaults_uses_theta_10():
    torch.manual_seed(2)
    rope = MixedRoPE2D(dim=16, num_heads=1, depth=1)
    mags = torch.hypot(rope.freqs[0], rope.freqs[1]).detach().view(2, 4)  # (cos, cos + pi/2) half, j
    torch.testing.assert_close(mags, torch.tensor([1.0, 10**-0.25, 10**-0.5, 10**-0.75]).expand(2, 4))


def test_each_frequency_pair_has_the_magnitude_theta_to_the_minus_4j_over_head_dim():
    torch.manual_seed(1)
    freqs = init_mixed_rope_freqs(16, 2, 2, 10.0)
    mags = torch.hypot(freqs[0], freqs[1]).view(2, 2, 2, 4)  # depth, head, (cos, cos + pi/2) half, j
    want = torch.tensor([1.0, 10**-0.25, 10**-0.5, 10**-0.75])
    torch.testing.assert_close(mags, want.expand(2, 2, 2, 4), rtol=1e-6, atol=0)


def test_a_head_width_not_divisible_by_4_is_refused():
    with pytest.raises(ValueError) as err:
        init_mixed_rope_freqs(6, 2, 1, 10.0)
    assert str(err.value) == "mixed 2-D RoPE needs a head width divisible by 4, got 6"


def test_grid_coordinates_are_column_then_row_in_row_major_order():
    t_x, t_y = grid_coordinates(2, 3)
    assert t_x.tolist() == [0.0, 1.0, 2.0, 0.0, 1.0, 2.0] and t_y.tolist() == [0.0, 0.0, 0.0, 1.0, 1.0, 1.0]
    assert t_x.dtype == t_y.dtype == torch.float32 and t_x.shape == t_y.shape == (6,)


def test_rotations_are_made_on_the_frequencies_device(monkeypatch):
    """Meta stands in for an accelerator: coordinates made on the CPU would not meet the frequencies."""
    t_x, t_y = grid_coordinates(2, 3, device="meta")
    assert t_x.device.type == t_y.device.type == "meta"
    # torch lets a CPU tensor meet a meta one, so the hand-off itself is what is checked
    import diffusers_mdiffae.models.vit_blocks as vit_blocks

    asked = []
    monkeypatch.setattr(vit_blocks, "grid_coordinates", lambda *a, **kw: asked.append(kw) or grid_coordinates(*a))
    rope = MixedRoPE2D(dim=16, num_heads=2, depth=2).to("meta")
    assert rope(2, 3).device.type == "meta" and asked == [{"device": torch.device("meta")}]


def test_each_tokens_rotation_angle_is_column_times_fx_plus_row_times_fy():
    rope = MixedRoPE2D(dim=16, num_heads=2, depth=2)
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        rope.freqs.copy_(torch.randn(rope.freqs.shape, generator=g))
    cis = rope(2, 3)
    assert cis.shape == (2, 2, 6, 4) and cis.dtype == torch.complex64
    torch.testing.assert_close(cis.abs(), torch.ones(2, 2, 6, 4))
    f = rope.freqs.detach().double()
    for d in range(2):
        for h in range(2):
            for n in range(6):
                x, y = n % 3, n // 3
                angle = x * f[0, d, h * 4 : h * 4 + 4] + y * f[1, d, h * 4 : h * 4 + 4]
                want = torch.polar(torch.ones(4, dtype=torch.float64), angle).to(torch.complex64)
                torch.testing.assert_close(cis[d, h, n], want, rtol=1e-5, atol=1e-5)


def test_layer_scale_starts_at_1e_5_per_channel_and_scales_the_last_dimension():
    scale = LayerScale(6)
    assert torch.equal(scale.gamma.detach(), torch.full((6,), 1e-5))
    assert torch.equal(LayerScale(3, init_values=0.5).gamma.detach(), torch.full((3,), 0.5))
    x = torch.arange(12.0).view(2, 6)
    assert torch.equal(scale(x), x * 1e-5)


def test_a_vit_block_defaults_to_layernorm_eps_1e_6_and_an_mlp_4_times_wider():
    block = ViTBlock(16, 2)
    assert block.norm1.eps == block.norm2.eps == 1e-6
    assert block.mlp.fc1.out_features == 64 and block.mlp.fc2.in_features == 64
    assert torch.equal(block.ls1.gamma.detach(), torch.full((16,), 1e-5))
    assert torch.equal(block.ls2.gamma.detach(), torch.full((16,), 1e-5))
    other = ViTBlock(16, 2, mlp_ratio=2.5, norm_eps=1e-5)
    assert other.norm1.eps == other.norm2.eps == 1e-5 and other.mlp.fc1.out_features == 40


def test_rope_rotates_from_the_first_token_unless_told_where_to_start():
    torch.manual_seed(0)
    block = ViTBlock(16, 2)
    for scale in (block.ls1, block.ls2):
        scale.gamma.data.fill_(1.0)
    x = torch.randn(1, 5, 16)
    rope = MixedRoPE2D(16, 2, 1)(2, 2)[0]  # [heads, 4 tokens, head_dim / 2]
    with torch.no_grad():
        for module, inp in ((block.attn, block.norm1(x)), (block, x)):
            assert torch.equal(module(inp, rope), module(inp, rope, 0))
            assert not torch.allclose(module(inp, rope), module(inp, rope, 1))


def test_attention_refuses_a_width_its_heads_do_not_divide_naming_both():
    assert error_message(Attention, 10, 3) == "width 10 is not divisible by 3 heads"
    assert error_message(ViTBlock, 16, 3) == "width 16 is not divisible by 3 heads"


def test_a_patch_embedding_keeps_its_patch_size_and_makes_one_token_per_patch():
    embed = PatchEmbed(3, 16, 8)
    assert embed.patch_size == 8
    assert embed(torch.zeros(2, 3, 32, 24)).shape == (2, 12, 16)
