"""The latent-token ViTs of MAETok / SoftVQ-VAE (models/latent_token_vit.py): parameter layout and defaults.

The parameter names and shapes are what ``save_pretrained`` writes and a saved folder must match
(token order ``[cls, N image tokens, L latent tokens]``, every table with a leading batch axis of 1).
"""

import pytest
import torch

from diffusers_mdiffae.models.latent_token_vit import LatentTokenDecoder, LatentTokenEncoder, SoftVectorQuantizer

# image 32, patch 8: a 4 x 4 grid, N = 16 image tokens; L = 5 latent tokens; width 16, 2 heads
SIZES = {"image_size": 32, "patch_size": 8, "dim": 16, "depth": 2, "num_heads": 2, "num_latent_tokens": 5}


def shapes(module) -> dict:
    return {k: tuple(v.shape) for k, v in module.state_dict().items() if "blocks." not in k}


def test_encoder_tables_have_a_leading_axis_of_one():
    assert shapes(LatentTokenEncoder(**SIZES)) == {
        "cls_token": (1, 1, 16),
        "latent_pos_embed": (1, 5, 16),
        "norm.weight": (16,),
        "norm.bias": (16,),
        "patch_embed.proj.weight": (16, 3, 8, 8),
        "patch_embed.proj.bias": (16,),
        "pos_embed": (1, 17, 16),
        "latent_tokens": (1, 5, 16),
    }


def test_decoder_without_rope_by_default_has_a_position_table_and_no_rope():
    decoder = LatentTokenDecoder(**SIZES)
    assert decoder.rope is None
    assert shapes(decoder) == {
        "cls_token": (1, 1, 16),
        "latent_pos_embed": (1, 5, 16),
        "norm.weight": (16,),
        "norm.bias": (16,),
        "mask_token": (1, 1, 16),
        "pos_embed": (1, 17, 16),
        "to_pixel.weight": (192, 16),
        "to_pixel.bias": (192,),
    }


def test_decoder_with_rope_has_the_rope_frequencies_and_no_position_table():
    decoder = LatentTokenDecoder(**SIZES, use_rope=True)
    assert decoder.pos_embed is None
    assert shapes(decoder)["rope.freqs"] == (2, 2, 8)
    assert "pos_embed" not in shapes(decoder)


def test_encoder_and_decoder_run_on_a_batch():
    torch.manual_seed(0)
    encoder, decoder = LatentTokenEncoder(**SIZES), LatentTokenDecoder(**SIZES)
    with torch.no_grad():
        z = encoder(torch.rand(3, 3, 32, 32))
        assert z.shape == (3, 5, 16)
        assert decoder(z).shape == (3, 3, 32, 32)


def test_a_soft_quantizer_built_with_its_defaults_is_softvqs_one_cosine_codebook_at_temperature_0_07():
    q = SoftVectorQuantizer(8, 4)
    assert (q.num_codebooks, q.tau, q.l2_norm) == (1, 0.07, True)
    assert q.embedding.shape == (1, 8, 4)


def test_codebook_entries_start_uniform_in_plus_minus_one_over_the_codebook_size():
    torch.manual_seed(0)
    e = SoftVectorQuantizer(8, 16, num_codebooks=2).embedding.detach()
    assert e.shape == (2, 8, 16)
    # 256 draws: both ends of the interval are approached, neither is passed
    assert -1 / 8 <= e.min() < -0.9 / 8 and 0.9 / 8 < e.max() <= 1 / 8


def test_without_l2_norm_the_codebooks_are_used_as_stored():
    raw = SoftVectorQuantizer(8, 4, l2_norm=False)
    assert torch.equal(raw.codebooks(), raw.embedding)
    unit = SoftVectorQuantizer(8, 4)  # with it, every row has length 1
    torch.testing.assert_close(unit.codebooks().norm(dim=-1), torch.ones(1, 8))


def rope_magnitudes(vit) -> torch.Tensor:
    """|(fx, fy)| per layer, head, (cos, cos + pi/2) half and j, for SIZES' head width 8."""
    return torch.hypot(vit.rope.freqs[0], vit.rope.freqs[1]).detach().view(2, 2, 2, 2)


@pytest.mark.parametrize("cls", [LatentTokenEncoder, LatentTokenDecoder])
def test_built_with_its_defaults_a_vit_has_4x_mlps_layernorm_eps_1e_6_and_rope_theta_10(cls):
    torch.manual_seed(0)
    vit = cls(**SIZES, use_rope=True)
    assert vit.norm.eps == 1e-6
    for block in vit.blocks:
        assert block.norm1.eps == block.norm2.eps == 1e-6
        assert block.mlp.fc1.out_features == 64
    # theta ** (-4 j / head_dim) for head_dim 8, j = 0, 1
    torch.testing.assert_close(rope_magnitudes(vit), torch.tensor([1.0, 10**-0.5]).expand(2, 2, 2, 2))


@pytest.mark.parametrize("cls", [LatentTokenEncoder, LatentTokenDecoder])
def test_the_given_mlp_ratio_norm_eps_and_rope_theta_reach_every_block_and_the_rope(cls):
    torch.manual_seed(0)
    vit = cls(**SIZES, mlp_ratio=2.5, norm_eps=1e-5, use_rope=True, rope_theta=100.0)
    assert vit.norm.eps == 1e-5
    for block in vit.blocks:
        assert block.norm1.eps == block.norm2.eps == 1e-5
        assert block.mlp.fc1.out_features == 40
    torch.testing.assert_close(rope_magnitudes(vit), torch.tensor([1.0, 100**-0.5]).expand(2, 2, 2, 2))


# Wide and blockless, so that every table holds thousands of draws and building stays cheap.
WIDE = {"image_size": 16, "patch_size": 4, "dim": 2048, "depth": 0, "num_heads": 1, "num_latent_tokens": 2}


@pytest.mark.parametrize(
    "cls, name",
    [
        (LatentTokenEncoder, "cls_token"),
        (LatentTokenEncoder, "latent_pos_embed"),
        (LatentTokenEncoder, "pos_embed"),
        (LatentTokenEncoder, "latent_tokens"),
        (LatentTokenDecoder, "cls_token"),
        (LatentTokenDecoder, "latent_pos_embed"),
        (LatentTokenDecoder, "pos_embed"),
        (LatentTokenDecoder, "mask_token"),
    ],
)
def test_the_learned_tokens_and_position_tables_start_as_small_normal_noise_of_std_0_02(cls, name):
    torch.manual_seed(0)
    table = getattr(cls(**WIDE), name).detach()
    assert table.numel() >= 2048
    # 2048 draws: the sample std is within about 2 % of the true one; 10 % leaves a wide margin
    assert 0.018 < table.std().item() < 0.022
    assert abs(table.mean().item()) < 0.002
