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
    # Spec section 7: core encoder 36,287,168; decoder core 45,117,056 + 6,400 small tensors.
    assert enc == 36_287_168
    assert dec == 45_117_056 + 6_400


def test_mdiffae_v2_configuration_fits_its_published_size():
    n = count(decoder_depth=8, decoder_start_blocks=2, decoder_end_blocks=2, latent_channels=96,
              decoder_outer_norms=False, pdg_mode="dual")
    # 461.2 MiB of float32 (model card) brackets the count.
    assert 120_886_067 <= n <= 120_912_281


def test_irdiffae_configuration_fits_its_published_size():
    n = count(decoder_depth=8, decoder_start_blocks=2, decoder_end_blocks=2, latent_channels=128,
              decoder_outer_norms=False, pdg_mode="path_drop")
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
    assert img.shape == (1, 3, 256, 384)
    assert img.min() >= -1 and img.max() <= 1


def test_pipeline_facing_config_fields():
    with torch.device("meta"):
        m = AutoencoderMDiffAE()
    c = m.config
    assert 2 ** (len(c.block_out_channels) - 1) == 16
    assert c.latent_channels == 64
    assert isinstance(c.scaling_factor, float) and isinstance(c.shift_factor, float)
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
    from conftest import make_tiny, images

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
