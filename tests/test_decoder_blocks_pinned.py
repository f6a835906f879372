"""The DiCo decoder and its blocks (models/decoder.py, dico_blocks.py, embeddings.py): refusals, which
blocks take part, and dtypes under mixed-precision weights (diffusers' layerwise casting keeps some in float32)."""

import pytest
import torch
from fixtures.models import make_tiny

from diffusers_mdiffae.models.dico_blocks import DiCoBlock
from diffusers_mdiffae.models.embeddings import SinusoidalTimeEmbeddingMLP


def test_token_masking_a_path_drop_decoder_is_refused_naming_its_mode():
    model = make_tiny(family="irdiffae_v1")
    z = torch.zeros(1, model.config.latent_channels, 2, 2)
    with pytest.raises(ValueError) as err:
        model.decoder.condition_tokens(z, torch.ones(1, 1, 2, 2, dtype=torch.bool))
    assert str(err.value) == "token masking is not available with pdg_mode='path_drop'"


@pytest.mark.parametrize("index", [0, 1, 2])
def test_every_middle_block_of_a_skip_decoder_takes_part(index):
    """decoder_depth 5 with one start and one end block: three middle blocks, each with its modulation."""
    model = make_tiny(seed=2, family="mdiffae_v2", decoder_depth=5)
    assert len(model.decoder.middle_blocks) == 3
    z = torch.randn(1, model.config.latent_channels, 2, 2, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        before = model.decode(z, num_inference_steps=1, generator=torch.Generator().manual_seed(1)).sample
        for p in model.decoder.middle_blocks[index].parameters():
            p.add_(0.5)
        after = model.decode(z, num_inference_steps=1, generator=torch.Generator().manual_seed(1)).sample
    assert not torch.allclose(before, after, atol=1e-5)


def test_a_conditioned_dico_block_without_modulation_is_refused():
    block = DiCoBlock(8, 2.0, depthwise_kernel_size=3, use_external_adaln=True)
    with pytest.raises(ValueError) as err:
        block(torch.zeros(1, 8, 4, 4))
    assert str(err.value) == "this DiCoBlock is conditioned: pass adaln_m of shape [B, 4*C]"


def test_float32_gates_do_not_promote_a_half_precision_dico_block():
    torch.manual_seed(0)
    block = DiCoBlock(8, 2.0, depthwise_kernel_size=3).to(torch.bfloat16)
    block.gate1.data = torch.full((8,), 0.5)
    block.gate2.data = torch.full((8,), 0.25)
    with torch.no_grad():
        out = block(torch.randn(1, 8, 4, 4).to(torch.bfloat16))
    assert out.dtype == torch.bfloat16


def test_the_time_embedding_feeds_each_layer_in_that_layers_dtype():
    embed = SinusoidalTimeEmbeddingMLP(8, freq_dim=16)
    embed.proj_out.to(torch.bfloat16)  # proj_in float32, proj_out bfloat16
    with torch.no_grad():
        out = embed(torch.tensor([0.25, 0.5]))
    assert out.dtype == torch.bfloat16 and out.shape == (2, 8)


def test_a_dico_blocks_mlp_norm_uses_the_blocks_eps():
    block = DiCoBlock(8, 2.0, depthwise_kernel_size=3, norm_eps=1e-3)
    assert repr(block.mlp.norm) == "ChannelWiseRMSNorm(8, eps=0.001, affine=False)"
    assert repr(block.norm1) == repr(block.norm2) == "ChannelWiseRMSNorm(8, eps=0.001, affine=False)"
