"""Where tensors are placed: noise, masks, schedule coefficients and statistics follow the data's device.

This machine (and CI) has only a CPU, where every tensor already is where it must be. The ``meta``
device stands in for an accelerator: a tensor there has a shape, a dtype and a device but no data,
and an op that mixes it with a (non-scalar) CPU tensor fails as it would on a GPU. Three ways in:

* data on ``meta``: what comes out, or what the next step receives, must be on ``meta`` too;
* a default device of ``meta`` (``with torch.device("meta")``, as ``torch.set_default_device("cuda")``
  would be for a GPU user): random draws that are documented to happen on the CPU must still give
  real CPU numbers, so a factory call that lost its ``device`` would land on ``meta``;
* a file written on a GPU (its storages tagged ``cuda:0``) must still load on a CPU-only machine.
"""

import pytest
import torch
from fixtures.dtypes import default_dtype
from fixtures.models import make_tiny, make_tiny_tokenizer

from diffusers_mdiffae import VPDDIMScheduler, VPDPMSolverMultistepScheduler, VPPosterior
from diffusers_mdiffae.conversion.vmae_pth import load_latent_stats
from diffusers_mdiffae.models.autoencoders.autoencoder_maetok import TokenLatentDistribution
from diffusers_mdiffae.models.sampling import DecodeSettings, draw_noise, keep_mask, run_sampler
from diffusers_mdiffae.models.token_mask import grouped_keep_mask
from diffusers_mdiffae.training.objective import ObjectiveConfig, diffusion_loss

META = torch.device("meta")


def _meta(*shape, dtype=torch.float32):
    return torch.empty(*shape, device=META, dtype=dtype)


# -- decode noise and the PDG keep-mask ----------------------------------------------------


def test_decode_noise_is_drawn_on_cpu_then_moved_to_the_requested_device():
    noise, gens = draw_noise((2, 3, 4, 4), seed=0, device=META)
    assert noise.device == META and noise.dtype == torch.float32
    assert all(g.device.type == "cpu" for g in gens)


def test_seeded_decode_noise_stays_on_the_cpu_when_the_default_device_is_an_accelerator():
    expected, _ = draw_noise((2, 3, 4, 4), seed=5)
    expected_one, _ = draw_noise((2, 3, 4, 4), seed=5, per_sample=False)
    with torch.device("meta"):
        noise, _ = draw_noise((2, 3, 4, 4), seed=5)
        one, _ = draw_noise((2, 3, 4, 4), seed=5, per_sample=False)
    assert noise.device.type == "cpu" and torch.equal(noise, expected)
    assert one.device.type == "cpu" and torch.equal(one, expected_one)


def test_pdg_keep_mask_is_placed_on_the_requested_device():
    gens = [torch.Generator().manual_seed(s) for s in (0, 1)]
    mask = keep_mask(gens, 2, 4, 6, 0.75, META)
    assert mask.device == META and mask.shape == (2, 1, 4, 6) and mask.dtype == torch.bool
    assert keep_mask(torch.Generator().manual_seed(0), 2, 4, 6, 0.75, META).device == META
    assert keep_mask(None, 2, 4, 6, 0.75, META).device == META


# -- token masks ---------------------------------------------------------------------------


@pytest.mark.parametrize("generator", ["none", "one", "list"])
def test_token_mask_lands_on_the_requested_device_whatever_draws_it(generator):
    g = {
        "none": None,
        "one": torch.Generator().manual_seed(0),
        "list": [torch.Generator().manual_seed(0), torch.Generator().manual_seed(1)],
    }[generator]
    mask = grouped_keep_mask(2, 4, 4, 0.75, generator=g, device=META)
    assert mask.device == META and mask.shape == (2, 1, 4, 4)


@pytest.mark.parametrize("per_sample", [False, True])
def test_token_mask_draws_on_the_generators_device_when_the_default_device_is_an_accelerator(per_sample):
    def gen():
        if per_sample:
            return [torch.Generator().manual_seed(3), torch.Generator().manual_seed(4)]
        return torch.Generator().manual_seed(3)

    expected = grouped_keep_mask(2, 6, 4, 0.5, generator=gen())
    with torch.device("meta"):
        mask = grouped_keep_mask(2, 6, 4, 0.5, generator=gen(), device="cpu")
    assert mask.device.type == "cpu" and torch.equal(mask, expected)


def test_token_mask_continues_a_cpu_generators_stream_even_when_the_mask_goes_elsewhere():
    # The mask is drawn on the generator's device (the CPU) and only then moved, so the CPU
    # stream advances exactly as for a CPU mask; drawing on the target device would not consume it.
    g_meta, g_cpu = torch.Generator().manual_seed(7), torch.Generator().manual_seed(7)
    assert grouped_keep_mask(2, 4, 4, 0.75, generator=g_meta, device=META).device == META
    grouped_keep_mask(2, 4, 4, 0.75, generator=g_cpu, device="cpu")
    assert torch.equal(g_meta.get_state(), g_cpu.get_state())


# -- the decode loop -----------------------------------------------------------------------


class _Reached(Exception):
    pass


class _RecordingDecoder(torch.nn.Module):
    """Records the devices the first network call receives, then stops the loop."""

    uses_token_mask = uses_path_drop = False

    def __init__(self, scheduler):
        super().__init__()
        self.p = torch.nn.Parameter(torch.zeros(1))
        self.scheduler = scheduler
        self.seen = None

    def condition_tokens(self, z, mask=None):
        return z

    def denoise(self, x, t, cond, drop_middle_blocks=False):
        self.seen = {"x": x.device, "t": t.device, "cond": cond.device, "grid": self.scheduler.timesteps.device}
        raise _Reached


@pytest.mark.parametrize("scheduler_cls", [VPDDIMScheduler, VPDPMSolverMultistepScheduler])
def test_decode_loop_puts_cpu_noise_and_the_time_grid_on_the_latents_device(scheduler_cls):
    scheduler = scheduler_cls()
    decoder = _RecordingDecoder(scheduler)
    noise = torch.randn(2, 3, 4, 4, generator=torch.Generator().manual_seed(0))  # CPU, as draw_noise gives
    settings = DecodeSettings(2, "ddim", "linear", None, 1.0)
    with pytest.raises(_Reached):
        run_sampler(decoder, scheduler, _meta(2, 4, 1, 1), noise, settings)
    assert decoder.seen == {"x": META, "t": META, "cond": META, "grid": META}


# -- schedulers ----------------------------------------------------------------------------


@pytest.mark.parametrize("scheduler_cls", [VPDDIMScheduler, VPDPMSolverMultistepScheduler])
def test_set_timesteps_places_the_grid_on_the_requested_device(scheduler_cls):
    s = scheduler_cls()
    s.set_timesteps(3, device=META)
    assert s.timesteps.device == META and s.timesteps.shape == (3,)


@pytest.mark.parametrize("scheduler_cls", [VPDDIMScheduler, VPDPMSolverMultistepScheduler])
def test_a_cpu_grid_steps_samples_on_another_device(scheduler_cls):
    # Pipelines often call set_timesteps without a device: the grid stays on the CPU while the
    # samples live on the accelerator, so every coefficient must be moved to the sample's device.
    s = scheduler_cls()
    s.set_timesteps(3)
    x = s.initial_state(_meta(2, 3, 4, 4))
    assert x.device == META
    for t in s.timesteps:
        x = s.step(_meta(2, 3, 4, 4), t, x).prev_sample
        assert x.device == META and x.shape == (2, 3, 4, 4)


def test_add_noise_puts_python_timesteps_on_the_samples_device():
    s = VPDDIMScheduler()
    noisy = s.add_noise(_meta(2, 3, 4, 4), _meta(2, 3, 4, 4), [0.25, 0.75])
    assert noisy.device == META and noisy.shape == (2, 3, 4, 4)
    assert s.add_noise(_meta(2, 3, 4, 4), _meta(2, 3, 4, 4), torch.tensor([0.25, 0.75])).device == META


# -- autoencoders --------------------------------------------------------------------------


@pytest.mark.parametrize("with_generator", [False, True])
def test_vp_posterior_sample_is_drawn_for_the_posteriors_device(with_generator):
    posterior = VPPosterior(_meta(2, 4, 2, 2), _meta(2, 4, 2, 2), torch.zeros(4), torch.ones(4))
    g = torch.Generator().manual_seed(0) if with_generator else None
    draw = posterior.sample(g)
    assert draw.device == META and draw.shape == (2, 4, 2, 2)


def test_semdis_whitening_moves_its_statistics_to_the_latents_device():
    model = make_tiny(seed=4, family="semdisdiffae")  # statistics on the CPU
    c = model.config.latent_channels
    z = model.whiten(_meta(2, c, 2, 2))
    assert z.device == META and z.shape == (2, c, 2, 2)
    assert model.dewhiten(_meta(2, c, 2, 2)).device == META


def test_token_distribution_kl_is_on_the_tokens_device():
    kl = TokenLatentDistribution(_meta(3, 8, 4, dtype=torch.float16)).kl()
    assert kl.device == META and kl.shape == (3,) and kl.dtype == torch.float16


@pytest.mark.parametrize("with_stats", [False, True])
def test_vmae_latent_normalisation_moves_its_statistics_to_the_latents_device(with_stats):
    model = make_tiny_tokenizer("vmae")
    if with_stats:
        model.register_to_config(latents_mean=[0.0, 1.0, 2.0, 3.0], latents_std=[2.0] * 4)
    z = _meta(2, 4, 2, 2)
    assert model.normalize_latents(z).device == META
    assert model.denormalize_latents(z).device == META


# -- conversion ----------------------------------------------------------------------------


def test_latent_stats_saved_on_a_gpu_load_on_a_cpu_only_machine(tmp_path, monkeypatch):
    import torch.serialization

    path = tmp_path / "latents_stats.pt"
    # What torch.save writes for CUDA tensors: every storage tagged with its device, "cuda:0".
    monkeypatch.setattr(torch.serialization, "location_tag", lambda storage: "cuda:0")
    torch.save({"mean": torch.arange(4.0).view(1, 4, 1, 1), "std": torch.full((1, 4, 1, 1), 2.0)}, path)
    monkeypatch.undo()
    assert load_latent_stats(path) == {"latents_mean": [0.0, 1.0, 2.0, 3.0], "latents_std": [2.0] * 4}


# -- training objective --------------------------------------------------------------------


class _StandInModel:
    """Encoder, decoder and config as ``diffusion_loss`` uses them; the decoder records what it receives."""

    class config:
        patch_size = 4

    def __init__(self):
        self.scheduler = VPDDIMScheduler()
        self.seen = None

    def encoder(self, images):
        return torch.zeros(images.shape[0], 4, images.shape[-2] // 4, images.shape[-1] // 4, device=images.device)

    def decoder(self, x_t, t, z, keep_mask=None):
        self.seen = {"x_t": x_t.device, "t": t.device, "z": z.device, "keep_mask": keep_mask.device}
        raise _Reached


def test_training_step_gives_the_decoder_everything_on_the_images_device():
    # Every random draw of the objective is on the CPU generator; all of it (noise, latent noise and
    # its mixing weights, token mask, UMD patch mask, times) must reach the decoder on the images' device.
    model = _StandInModel()
    cfg = ObjectiveConfig(token_mask_prob=1.0, latent_noise_prob=1.0, umd_ratio=1.0, umd_mask_ratio=0.5)
    with pytest.raises(_Reached):
        diffusion_loss(model, _meta(2, 3, 8, 8), torch.Generator().manual_seed(0), cfg)
    assert model.seen == {"x_t": META, "t": META, "z": META, "keep_mask": META}


def test_a_tiled_encode_blends_its_tiles_on_the_images_device():
    from fixtures.models import make_tiny

    model = make_tiny().to(META)
    model.enable_tiling(tile_sample_min_size=32, tile_overlap_factor=0.25)
    assert model.encode(_meta(1, 3, 64, 64)).latent_dist.mode().device == META


def test_the_pdg_token_mask_of_a_decode_is_made_on_the_latents_device(monkeypatch):
    from fixtures.models import make_tiny

    from diffusers_mdiffae.models.autoencoders import vp_autoencoder

    seen = []

    def sampler(decoder, scheduler, latents, noise, settings, mask, callback):
        seen.append(mask.device)
        raise _Reached

    monkeypatch.setattr(vp_autoencoder, "run_sampler", sampler)
    model = make_tiny().to(META)  # mDiffAE v1: token-mask PDG
    settings = DecodeSettings(2, "ddim", model.scheduler.config.schedule, 2.0, 1.0)
    with pytest.raises(_Reached):
        model._decode(_meta(1, model.config.latent_channels, 2, 2), _meta(1, 3, 32, 32), None, settings, None)
    assert seen == [META]


def test_a_tiled_decode_blends_its_tiles_on_the_latents_device_in_float32(monkeypatch):
    from fixtures.models import make_tiny

    from diffusers_mdiffae.models.autoencoders import vp_autoencoder

    def sampler(decoder, scheduler, latents, noise, settings, mask, callback):
        return torch.ones(noise.shape, device=noise.device)

    monkeypatch.setattr(vp_autoencoder, "run_sampler", sampler)
    model = make_tiny()
    model.enable_tiling(tile_sample_min_size=32, tile_overlap_factor=0.25)
    settings = model.default_decode_settings()
    c = model.config.latent_channels
    with default_dtype(torch.float64):  # the blend weights must not follow it
        out = model._decode(torch.zeros(1, c, 4, 4), torch.zeros(1, 3, 64, 64), None, settings, None)
    assert out.dtype == torch.float32 and torch.equal(out, torch.ones(1, 3, 64, 64))
    # 2 x 5 latents in tiles of 2 without overlap: the last tile is moved back over the one before,
    # so some pixels are covered twice and only the division by the summed weights keeps them at 1
    model.enable_tiling(tile_sample_min_size=32, tile_overlap_factor=0.0)
    out = model._decode(torch.zeros(1, c, 2, 5), torch.zeros(1, 3, 32, 80), None, settings, None)
    assert torch.equal(out, torch.ones(1, 3, 32, 80))
    model.enable_tiling(tile_sample_min_size=32, tile_overlap_factor=0.25)
    out = model.to(META)._decode(_meta(1, c, 4, 4), _meta(1, 3, 64, 64), None, settings, None)
    assert out.device == META and out.shape == (1, 3, 64, 64)
