"""SemDisDiffAE: the published configuration, the VP posterior, whitening, the published API, pipelines."""

import json

import pytest
import torch
from diffusers import DDIMScheduler, DiffusionPipeline, DiTPipeline
from fixtures.models import images, make_tiny

import diffusers_mdiffae  # noqa: F401  (diffusers resolves the saved class name from sys.modules)
from diffusers_mdiffae import AutoencoderSemDisDiffAE, FCDMDiffAE, FCDMDiffAEInferenceConfig, VPPosterior


@pytest.fixture
def model():
    return make_tiny(seed=4, family="semdisdiffae")


def test_published_configuration_has_88_8_million_parameters():
    with torch.device("meta"):
        m = AutoencoderSemDisDiffAE()
    assert m.num_parameters() == 88_771_328  # the card's 88.8 M
    c = m.config
    assert (c.model_dim, c.patch_size, c.encoder_depth, c.decoder_depth, c.latent_channels) == (896, 16, 4, 8, 128)
    assert (c.decoder_start_blocks, c.decoder_end_blocks) == (2, 2)
    assert c.bottleneck_posterior_kind == "diagonal_gaussian" and c.bottleneck_norm_mode == "disabled"
    assert c.latent_running_stats_eps == 1e-4


def test_pipelines_see_128_channels_at_factor_16_with_unit_scaling():
    with torch.device("meta"):
        m = AutoencoderSemDisDiffAE()
    assert m.config.latent_channels == 128 and 2 ** (len(m.config.block_out_channels) - 1) == 16
    assert type(m.config.scaling_factor) is float and m.config.scaling_factor == 1.0
    assert type(m.config.shift_factor) is float and m.config.shift_factor == 0.0
    assert m.config.latents_mean is None and m.spatial_compression_ratio == 16


def test_encode_returns_the_whitened_posterior_mode(model):
    x = images(2, 32, 48)
    with torch.no_grad():
        out = model.encode(x)
        mean, logsnr = model.encode_posterior(x)
    assert isinstance(out.latent_dist, VPPosterior)
    assert out.latent.shape == (2, 128, 2, 3)
    m, s = model.latent_stats()
    expected = (torch.sigmoid(logsnr).sqrt() * mean - m.view(1, -1, 1, 1)) / s.view(1, -1, 1, 1)
    assert torch.allclose(out.latent, expected, atol=1e-6)
    assert torch.equal(out.latent_dist.mode(), out.latent)


def test_posterior_sample_differs_from_the_mode_by_the_posterior_sigma(model):
    x = images(1, 32, 32)
    with torch.no_grad():
        dist = model.encode(x).latent_dist
    draw = dist.sample(torch.Generator().manual_seed(0))
    eps = torch.randn(draw.shape, generator=torch.Generator().manual_seed(0))
    sigma_w = dist.sigma / model.latent_stats()[1].view(1, -1, 1, 1)
    assert torch.allclose(draw - dist.mode(), sigma_w * eps, atol=1e-5)
    assert not torch.equal(draw, dist.mode())
    assert torch.allclose(dist.std, sigma_w, rtol=1e-4)  # DiagonalGaussianDistribution users see the same moments


def test_posterior_moments_in_closed_form():
    """logsnr = log 3 gives alpha = sqrt(3)/2, sigma = 1/2; -log 3 swaps them; whitening is (z - m) / s."""
    log3 = torch.tensor(3.0).log().item()
    mean = torch.tensor([[[[1.0, 2.0]], [[-4.0, 0.5]]]])  # [1, 2, 1, 2]
    logsnr = torch.tensor([[[[log3, -log3]], [[0.0, log3]]]])
    post = VPPosterior(mean, logsnr, torch.tensor([0.5, -1.0]), torch.tensor([2.0, 0.25]))
    r3, h = 3**0.5 / 2, 0.5**0.5
    alpha = torch.tensor([[[[r3, 0.5]], [[h, r3]]]])
    sigma = torch.tensor([[[[0.5, r3]], [[h, 0.5]]]])
    assert torch.allclose(post.alpha, alpha) and torch.allclose(post.sigma, sigma)
    shift, scale = torch.tensor([0.5, -1.0]).view(1, 2, 1, 1), torch.tensor([2.0, 0.25]).view(1, 2, 1, 1)
    assert torch.allclose(post.mode(), (alpha * mean - shift) / scale)
    assert torch.allclose(post.mean, post.mode()) and torch.allclose(post.std, sigma / scale)


def test_posterior_of_a_bfloat16_encoder_keeps_its_dtype_and_rounds_the_mode_like_it():
    log3 = torch.tensor(3.0).log().item()
    mean = torch.ones(1, 1, 1, 1, dtype=torch.bfloat16)
    post = VPPosterior(mean, torch.full((1, 1, 1, 1), log3, dtype=torch.bfloat16), torch.zeros(1), torch.ones(1))
    assert post.mean.dtype == post.std.dtype == post.logvar.dtype == torch.bfloat16
    # alpha * 1 = 0.8660... is rounded to bfloat16 (0.8671875) as the encoder would, then whitened in float32
    mode = post.mode()
    assert mode.dtype == torch.float32 and mode.item() == torch.tensor(3**0.5 / 2).to(torch.bfloat16).item()


def test_decode_dewhitens_before_the_decoder(model):
    z = torch.randn(1, 128, 2, 2)
    with torch.no_grad():
        out = model.decode(z).sample
        model.latent_norm_running_mean.zero_()
        model.latent_norm_running_var.fill_(1.0 - model.config.latent_running_stats_eps)
        plain = model.decode(z).sample
    assert not torch.allclose(out, plain)
    assert torch.allclose(model.dewhiten(model.whiten(z)), z, atol=1e-5)


def test_save_and_load_round_trip_keeps_the_whitening_statistics(tmp_path, model):
    model.save_pretrained(tmp_path)
    loaded = AutoencoderSemDisDiffAE.from_pretrained(tmp_path)
    for (k, a), (_, b) in zip(model.state_dict().items(), loaded.state_dict().items()):
        assert torch.equal(a, b), k
    half = AutoencoderSemDisDiffAE.from_pretrained(tmp_path, torch_dtype=torch.bfloat16)
    assert half.dtype == torch.bfloat16 and half.latent_norm_running_var.dtype == torch.float32
    assert torch.equal(half.latent_norm_running_mean, model.latent_norm_running_mean)


def test_published_api_encode_decode_reconstruct(model):
    api = FCDMDiffAE(model)
    x = images(2, 32, 48)
    z = api.encode(x)
    assert z.shape == (2, 128, 2, 3) and z.dtype == torch.float32
    cfg = FCDMDiffAEInferenceConfig(num_steps=2, pdg=True, pdg_strength=2.0, seed=3)
    a = api.decode(z, height=32, width=48, inference_config=cfg)
    assert a.shape == x.shape and torch.equal(a, api.decode(z, 32, 48, inference_config=cfg))
    assert torch.equal(api.reconstruct(x, inference_config=cfg), a)
    posterior = api.encode_posterior(x)
    assert torch.equal(api.whiten(posterior.mode()), z)


def test_dit_pipeline_runs_saves_and_reloads_with_128_channels(tmp_path, model):
    from test_pipeline import run, tiny_dit

    pipe = DiTPipeline(
        transformer=tiny_dit(latent_channels=128),
        vae=model,
        scheduler=DDIMScheduler(timestep_spacing="trailing"),
        id2label={0: "zero", 1: "one"},
    )
    ref = run(pipe)
    assert ref.shape == (2, 64, 64, 3)
    pipe.save_pretrained(tmp_path)
    index = json.loads((tmp_path / "model_index.json").read_text())
    assert index["vae"][1] == "AutoencoderSemDisDiffAE"
    reloaded = DiffusionPipeline.from_pretrained(tmp_path)
    assert isinstance(reloaded.vae, AutoencoderSemDisDiffAE)
    assert (run(reloaded) == ref).all()


def test_full_size_dit_latent_shape():
    torch.manual_seed(0)
    m = AutoencoderSemDisDiffAE().eval()
    with torch.no_grad():
        z = m.encode(torch.rand(1, 3, 64, 96) * 2 - 1).latent
    assert z.shape == (1, 128, 4, 6)
