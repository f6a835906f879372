"""The default configuration is the published mdiffae_v1 architecture; siblings are configurations."""

import pytest
import torch

from diffusers_mdiffae import AutoencoderMDiffAE


def count(**config):
    with torch.device("meta"):
        return AutoencoderMDiffAE(**config).num_parameters()


def test_default_config_has_published_mdiffae_v1_parameter_count():
    assert count() == 81_410_624


def test_v1_encoder_and_decoder_split_matches_the_spec_arithmetic():
    with torch.device("meta"):
        m = AutoencoderMDiffAE()
    enc = sum(p.numel() for p in m.encoder.parameters())
    dec = sum(p.numel() for p in m.decoder.parameters())
    # Spec section 7: core encoder 36,287,168, decoder core 45,117,056, and 6,400 small tensors. Our
    # reading: an affine 64-channel encoder norm_out (128) and, in the decoder, norm_in, latent_norm
    # and norm_out on 896 channels (3 x 1,792) plus the [1, 896, 1, 1] mask feature.
    assert enc == 36_287_168 + 128
    assert dec == 45_117_056 + 6_272


def test_mdiffae_v2_configuration_fits_its_published_size():
    n = count(
        decoder_depth=8,
        decoder_start_blocks=2,
        decoder_end_blocks=2,
        latent_channels=96,
        outer_norms=False,
        pdg_mode="dual",
    )
    # 461.2 MiB of float32 (model card) brackets the count.
    assert 120_886_067 <= n <= 120_912_281


def test_irdiffae_configuration_fits_its_published_size():
    n = count(
        decoder_depth=8,
        decoder_start_blocks=2,
        decoder_end_blocks=2,
        latent_channels=128,
        outer_norms=False,
        pdg_mode="path_drop",
    )
    assert 120_938_496 <= n <= 120_964_710


@pytest.fixture(scope="module")
def full_model():
    torch.manual_seed(0)
    return AutoencoderMDiffAE().eval()


@pytest.mark.parametrize("h,w", [(256, 256), (512, 512), (256, 384)])
def test_full_size_encoder_gives_64_channels_at_one_sixteenth(full_model, h, w):
    x = torch.rand(1, 3, h, w) * 2 - 1
    with torch.no_grad():
        out = full_model.encode(x)
    assert out.latent_dist.mode().shape == (1, 64, h // 16, w // 16)
    assert out.latent.shape == (1, 64, h // 16, w // 16)


def test_full_size_one_step_decode_shape(full_model):
    z = torch.randn(1, 64, 16, 24)
    with torch.no_grad():
        img = full_model.decode(z).sample
    assert img.shape == (1, 3, 256, 384) and torch.isfinite(img).all()


def test_pipeline_facing_config_fields():
    with torch.device("meta"):
        m = AutoencoderMDiffAE()
    c = m.config
    assert 2 ** (len(c.block_out_channels) - 1) == 16
    assert c.latent_channels == 64
    assert type(c.scaling_factor) is float and c.scaling_factor == 1.0
    assert type(c.shift_factor) is float and c.shift_factor == 0.0
    assert c.latents_mean is None and c.latents_std is None
    assert c.force_upcast is False
    assert m.spatial_compression_ratio == 16
    assert m.use_slicing is False and m.use_tiling is False


def test_block_out_channels_length_must_match_patch_size():
    with pytest.raises(ValueError, match="block_out_channels"):
        AutoencoderMDiffAE(model_dim=32, encoder_depth=1, decoder_depth=1, block_out_channels=(32, 32, 32, 32))


def test_path_drop_guidance_needs_a_skip_decoder():
    with pytest.raises(ValueError, match="skip decoder"):
        AutoencoderMDiffAE(model_dim=32, encoder_depth=1, decoder_depth=1, pdg_mode="path_drop")


def test_gradient_checkpointing_toggles_and_gives_same_gradients():
    from fixtures.models import images, make_tiny

    x = images(1, 32, 32)

    def grads(model):
        model.train()
        model.zero_grad()
        z = model.encoder(x)
        t = torch.full((1,), 0.5)
        loss = model.decoder(x, t, z).square().mean()
        loss.backward()
        return loss.detach(), [p.grad.clone() for p in model.parameters() if p.grad is not None]

    model = make_tiny()
    assert not model.is_gradient_checkpointing
    ref_loss, ref = grads(model)
    model.enable_gradient_checkpointing()
    assert model.is_gradient_checkpointing
    loss, got = grads(model)
    assert torch.allclose(loss, ref_loss)
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(got, ref))
    model.disable_gradient_checkpointing()
    assert not model.is_gradient_checkpointing


# The tensor names the public evidence fixes (README "Evidence"): the same in every family member.
EVIDENCE_NAMES = [
    "decoder.patchify.proj.weight",
    "decoder.latent_up.weight",
    "decoder.fuse_in.weight",
    "decoder.time_embed.freqs",
    "decoder.time_embed.proj_in.weight",
    "decoder.time_embed.proj_out.weight",
    "decoder.adaln_base.proj.bias",
    "decoder.adaln_deltas.0.down.weight",
    "decoder.adaln_deltas.0.up.weight",
    "decoder.out_proj.weight",
    "encoder.patchify.proj.weight",
    "encoder.to_bottleneck.weight",
]
SKIP_NAMES = [
    "decoder.start_blocks.0.conv1.weight",
    "decoder.middle_blocks.0.conv1.weight",
    "decoder.end_blocks.0.conv1.weight",
    "decoder.fuse_skip.weight",
    "decoder.path_drop_mask_feature",
]


@pytest.mark.parametrize("family", ["mdiffae_v1", "mdiffae_v2", "irdiffae_v1", "semdisdiffae"])
def test_every_family_member_uses_the_published_tensor_names(family):
    from fixtures.models import make_tiny

    keys = set(make_tiny(family=family).state_dict())
    assert set(EVIDENCE_NAMES) <= keys
    assert "decoder.adaln_deltas.0.down.bias" not in keys and "decoder.adaln_deltas.0.up.bias" not in keys
    if family != "mdiffae_v1":
        names = SKIP_NAMES if family != "semdisdiffae" else [n.replace("conv1", "pwconv1") for n in SKIP_NAMES]
        assert set(names) <= keys
    if family == "mdiffae_v1":
        assert {
            "decoder.mask_feature",
            "decoder.norm_in.weight",
            "decoder.latent_norm.weight",
            "decoder.norm_out.weight",
            "encoder.norm_out.weight",
            "decoder.blocks.0.conv1.weight",
        } <= keys
    if family == "mdiffae_v2":
        assert "decoder.latent_mask_feature" in keys and "decoder.norm_in.weight" not in keys
    if family == "semdisdiffae":
        assert {
            "latent_norm_running_mean",
            "latent_norm_running_var",
            "encoder.blocks.0.layer_scale",
            "decoder.start_blocks.0.grn.gamma",
            "decoder.start_blocks.0.dwconv.weight",
        } <= keys
        assert "encoder.norm_in.weight" not in keys


def test_patchify_is_a_strided_convolution():
    with torch.device("meta"):
        m = AutoencoderMDiffAE()
    assert tuple(m.decoder.patchify.proj.weight.shape) == (896, 3, 16, 16)
    assert m.decoder.patchify.proj.stride == (16, 16)


def test_time_frequencies_are_a_float32_buffer_that_survives_half_casts():
    from fixtures.models import make_tiny

    m = make_tiny()
    ref = m.decoder.time_embed.freqs.clone()
    assert ref.dtype == torch.float32 and ref.shape == (128,)
    assert ref[-1].item() == pytest.approx(1e-4, rel=1e-6)  # exp(-ln(1e4) * 127 / 127)
    m.to(torch.float16)
    assert m.decoder.time_embed.freqs.dtype == torch.float32 and torch.equal(m.decoder.time_embed.freqs, ref)
