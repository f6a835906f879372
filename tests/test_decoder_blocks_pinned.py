"""The DiCo decoder and its blocks (models/decoder.py, dico_blocks.py, embeddings.py): refusals, which
blocks take part, and dtypes under mixed-precision weights (diffusers' layerwise casting keeps some in float32)."""

import math

import pytest
import torch
from fixtures.dtypes import default_dtype
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


# -- the decoder's own defaults, refusals and initialisation -------------------------------------------


def test_the_decoders_defaults_are_the_mdiffae_v1_configs():
    import inspect

    from diffusers_mdiffae import AutoencoderMDiffAE
    from diffusers_mdiffae.models.decoder import Decoder

    renamed = {"depth": "decoder_depth", "start_blocks": "decoder_start_blocks", "end_blocks": "decoder_end_blocks"}
    config = inspect.signature(AutoencoderMDiffAE.__init__).parameters
    own = {k: p.default for k, p in inspect.signature(Decoder.__init__).parameters.items() if k != "self"}
    shared = {k: v for k, v in own.items() if renamed.get(k, k) in config}
    assert shared == {k: config[renamed.get(k, k)].default for k in shared}
    assert own["block_type"] == "dico" and set(shared) == set(own) - {"block_type"}
    assert (own["patch_size"], own["depthwise_kernel_size"], own["adaln_low_rank_rank"]) == (16, 7, 128)
    assert (own["pdg_mode"], own["norm_eps"]) == ("token_mask", 1e-6)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"block_type": "vit"}, "block_type must be one of ['dico', 'fcdm'], got 'vit'"),
        ({"pdg_mode": "drop"}, "pdg_mode must be one of ('token_mask', 'path_drop', 'dual'), got 'drop'"),
        (
            {"pdg_mode": "dual"},
            "path-drop guidance needs a skip decoder (decoder_start_blocks/decoder_end_blocks > 0)",
        ),
        (
            {"pdg_mode": "path_drop"},
            "path-drop guidance needs a skip decoder (decoder_start_blocks/decoder_end_blocks > 0)",
        ),
        (
            {"depth": 2, "start_blocks": 1, "end_blocks": 1},
            "decoder depth 2 leaves no middle block after 1 start and 1 end blocks",
        ),
    ],
)
def test_a_decoder_that_cannot_exist_is_refused_with_its_sentence(kwargs, message):
    from diffusers_mdiffae.models.decoder import Decoder

    with pytest.raises(ValueError) as err:
        Decoder(model_dim=8, depth=kwargs.pop("depth", 1), latent_channels=4, adaln_low_rank_rank=2, **kwargs)
    assert str(err.value) == message


def test_adaln_starts_as_zero_modulation_with_a_small_random_down_projection():
    from diffusers_mdiffae.models.adaln import AdaLNZeroLowRankDelta, AdaLNZeroProjector

    torch.manual_seed(0)
    delta = AdaLNZeroLowRankDelta(64, 512, 256, 2)
    base = AdaLNZeroProjector(64, 512, 4)
    assert delta.down.weight.shape == (256, 512) and delta.up.weight.shape == (128, 256)
    assert delta.down.bias is None and delta.up.bias is None
    assert abs(delta.down.weight.std().item() - 0.02) < 0.0005 and abs(delta.down.weight.mean().item()) < 0.0005
    assert not delta.up.weight.any()
    assert base.proj.weight.shape == (256, 512) and not base.proj.weight.any() and not base.proj.bias.any()


def test_time_frequencies_are_float32_from_1_down_to_1_over_max_period_whatever_the_default_dtype():
    from diffusers_mdiffae.models.embeddings import log_spaced_frequencies

    with default_dtype(torch.float64):
        freqs = log_spaced_frequencies(4)
    assert freqs.dtype == torch.float32
    expected = torch.tensor([1.0, 10000.0 ** (-1 / 3), 10000.0 ** (-2 / 3), 1e-4], dtype=torch.float32)
    torch.testing.assert_close(freqs, expected, rtol=1e-6, atol=0)
    # two frequencies still end at 1 / max_period, one is just 1
    torch.testing.assert_close(log_spaced_frequencies(2, 100.0), torch.tensor([1.0, 0.01]), rtol=1e-6, atol=0)
    assert torch.equal(log_spaced_frequencies(1, 100.0), torch.tensor([1.0]))


def test_a_tiny_time_embedding_keeps_a_hidden_width_of_at_least_one():
    assert SinusoidalTimeEmbeddingMLP(4, freq_dim=8, hidden_mult=0.1).proj_in.out_features == 1
    assert SinusoidalTimeEmbeddingMLP(4, freq_dim=8, hidden_mult=0.5).proj_in.out_features == 2


def test_a_decoder_built_with_its_defaults_has_v1s_geometry():
    from diffusers_mdiffae.models.decoder import Decoder

    decoder = Decoder(model_dim=8, latent_channels=4, depth=1)
    convs = [m for m in decoder.modules() if isinstance(m, torch.nn.Conv2d)]
    assert max(m.kernel_size[0] for m in convs if m.groups == 1) == 16  # the patch embedding
    assert {m.kernel_size for m in convs if m.groups > 1} == {(7, 7)}  # the depthwise convolutions
    assert decoder.adaln_deltas[0].down.out_features == 128
    assert decoder.pdg_mode == "token_mask" and decoder.norm_in.eps == 1e-6
    # a bare decoder (no autoencoder around it to choose) keeps its activations channels-last
    assert decoder.memory_format == torch.channels_last


def test_a_decoder_built_with_no_arguments_is_v1s_896_wide_and_4_blocks_deep():
    from diffusers_mdiffae.models.decoder import Decoder

    with torch.device("meta"):  # the full-size model, without allocating it
        decoder = Decoder()
    assert decoder.norm_out.weight.shape == (896,) and len(decoder.blocks) == 4
    assert decoder.out_proj.out_channels == 3 * 16 * 16
    assert decoder.latent_up.in_channels == 64 and decoder.patchify.proj.kernel_size == (16, 16)
    assert all(block.mlp.conv_in.out_channels == 4 * 896 for block in decoder.blocks)
    assert all(block.conv2.kernel_size == (7, 7) for block in decoder.blocks)
    assert decoder.pdg_mode == "token_mask" and decoder.gradient_checkpointing is False and decoder.patch_size == 16
    assert [d.down.out_features for d in decoder.adaln_deltas] == [128] * 4
    from diffusers_mdiffae.models.norms import ChannelWiseRMSNorm

    assert {m.eps for m in decoder.modules() if isinstance(m, ChannelWiseRMSNorm)} == {1e-6}


def test_each_block_of_a_skip_decoder_gets_its_own_modulation():
    """depth 3 with one start and one end block: the end block takes the third modulation, not the first."""
    dec = make_tiny(family="irdiffae_v1", decoder_depth=3).decoder
    got, deltas, base = [], [], []
    for block in (*dec.start_blocks, *dec.middle_blocks, *dec.end_blocks):
        block.register_forward_pre_hook(lambda module, args: got.append(args[1]))
    for delta in dec.adaln_deltas:
        delta.register_forward_hook(lambda module, args, out: deltas.append(out))
    dec.adaln_base.register_forward_hook(lambda module, args, out: base.append(out))
    with torch.no_grad():
        dec(torch.randn(1, 3, 32, 32), torch.tensor([0.5]), torch.randn(1, 128, 2, 2))
    assert len(got) == len(deltas) == 3
    assert all(torch.equal(m, base[0] + d) for m, d in zip(got, deltas))


def test_path_drop_is_refused_by_a_skip_decoder_without_it_naming_its_mode():
    dec = make_tiny(family="mdiffae_v2", pdg_mode="token_mask").decoder
    with pytest.raises(ValueError) as err:
        dec(torch.zeros(1, 3, 32, 32), torch.tensor([0.5]), torch.zeros(1, 96, 2, 2), drop_middle_blocks=True)
    assert str(err.value) == "path drop is not available with pdg_mode='token_mask'"


def test_path_drop_in_half_precision_keeps_the_half_precision():
    dec = make_tiny(family="irdiffae_v1").decoder.to(torch.bfloat16)
    dec.path_drop_mask_feature.data = dec.path_drop_mask_feature.data.float()  # as layerwise casting keeps it
    x, t, z = torch.zeros(1, 3, 32, 32), torch.tensor([0.5]), torch.zeros(1, 128, 2, 2)
    with torch.no_grad():
        out = dec(x.bfloat16(), t, z.bfloat16(), drop_middle_blocks=True)
    assert out.dtype == torch.bfloat16


def test_a_half_precision_time_embedding_casts_its_float32_features_to_its_weights():
    embed = SinusoidalTimeEmbeddingMLP(8, freq_dim=16).to(torch.bfloat16)
    with torch.no_grad():
        assert embed(torch.tensor([0.25, 0.5])).dtype == torch.bfloat16


def test_token_masking_in_half_precision_keeps_the_half_precision():
    dec = make_tiny().decoder.to(torch.bfloat16)
    dec.token_mask_feature.data = dec.token_mask_feature.data.float()  # as layerwise casting keeps it
    keep = torch.tensor([[[[True, False], [False, True]]]])
    with torch.no_grad():
        z = dec.condition_tokens(torch.zeros(1, 64, 2, 2, dtype=torch.bfloat16), keep)
    assert z.dtype == torch.bfloat16


def test_a_half_precision_dico_block_takes_float32_modulation():
    torch.manual_seed(0)
    block = DiCoBlock(8, 2.0, depthwise_kernel_size=3, use_external_adaln=True).to(torch.bfloat16)
    with torch.no_grad():
        out = block(torch.randn(1, 8, 4, 4).bfloat16(), torch.randn(1, 32))
    assert out.dtype == torch.bfloat16


def test_a_dico_conv_mlp_normalises_with_eps_1e_6_by_default():
    from diffusers_mdiffae.models.dico_blocks import ConvMLP

    assert ConvMLP(8, 16).norm.eps == 1e-6 and ConvMLP(8, 16, norm_eps=1e-3).norm.eps == 1e-3


def test_a_dico_blocks_defaults_are_an_mlp_4_times_wider_a_7x7_depthwise_conv_and_eps_1e_6():
    block = DiCoBlock(8)
    assert block.channels == 8 and block.mlp.norm.eps == block.norm1.eps == block.norm2.eps == 1e-6
    assert block.mlp.conv_in.out_channels == 32 == block.mlp.conv_out.in_channels
    assert block.conv2.kernel_size == (7, 7) and block.conv2.padding == (3, 3) and block.conv2.groups == 8


def test_a_conditioned_dico_block_has_no_gate_parameters_but_gate_attributes_of_none():
    block = DiCoBlock(8, 2.0, depthwise_kernel_size=3, use_external_adaln=True)
    assert block.gate1 is None and block.gate2 is None
    assert not any(name.startswith("gate") for name in block.state_dict())
    assert {"gate1", "gate2"} <= set(DiCoBlock(8, 2.0, depthwise_kernel_size=3).state_dict())


def test_a_time_embedding_keeps_its_frequency_width_and_period():
    embed = SinusoidalTimeEmbeddingMLP(8, freq_dim=8, max_period=100)
    assert (embed.freq_dim, embed.max_period) == (8, 100)
    expected = torch.tensor([1.0, 100.0 ** (-1 / 3), 100.0 ** (-2 / 3), 0.01], dtype=torch.float32)
    torch.testing.assert_close(embed.freqs, expected, rtol=1e-6, atol=0)


def test_the_narrowest_time_embedding_has_one_sine_and_one_cosine():
    embed = SinusoidalTimeEmbeddingMLP(4, freq_dim=2)
    t = torch.tensor([0.001])  # angle 1000 * 0.001 * 1 = 1 radian
    torch.testing.assert_close(embed.features(t), torch.tensor([[math.sin(1.0), math.cos(1.0)]]))
    assert embed(t).shape == (1, 4)


@pytest.mark.parametrize("freq_dim", [0, 7])
def test_a_time_embedding_refuses_a_frequency_width_without_two_equal_halves(freq_dim):
    # an odd width would build a proj_in one wider than the sin/cos features it is given
    with pytest.raises(ValueError) as err:
        SinusoidalTimeEmbeddingMLP(8, freq_dim=freq_dim)
    assert str(err.value) == f"freq_dim must be even and at least 2 (a sine and a cosine half), got {freq_dim}"


def test_the_decoders_eps_reaches_its_outer_norms_and_its_blocks():
    from diffusers_mdiffae.models.decoder import Decoder
    from diffusers_mdiffae.models.norms import ChannelWiseRMSNorm

    decoder = Decoder(model_dim=8, depth=1, latent_channels=4, adaln_low_rank_rank=2, norm_eps=1e-3)
    outer = (decoder.norm_in, decoder.latent_norm, decoder.norm_out)
    assert all(isinstance(n, ChannelWiseRMSNorm) and n.eps == 1e-3 for n in outer)
    assert {m.eps for m in decoder.blocks.modules() if isinstance(m, ChannelWiseRMSNorm)} == {1e-3}


@pytest.mark.parametrize("family, key", [("mdiffae_v1", "mask_feature"), ("irdiffae_v1", "path_drop_mask_feature")])
def test_the_learned_mask_features_are_checkpoint_tensors_of_shape_1_c_1_1(family, key):
    state = make_tiny(family=family).decoder.state_dict()
    assert state[key].shape == (1, 32, 1, 1)  # TINY's model_dim
