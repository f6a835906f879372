"""The numbers pipelines read from the config, and the decode loop's settings, noise and PDG branches, pinned."""

import inspect
import json

import pytest
import torch
from fixtures.dtypes import default_dtype
from fixtures.models import make_tiny

from diffusers_mdiffae import (
    DEMO_MODEL_DIR,
    AutoencoderMDiffAE,
    AutoencoderSemDisDiffAE,
    FCDMDiffAEInferenceConfig,
    IRDiffAEInferenceConfig,
    MDiffAEInferenceConfig,
    VPDDIMScheduler,
    VPDPMSolverMultistepScheduler,
)
from diffusers_mdiffae.models.sampling import (
    DecodeSettings,
    check_seed,
    draw_noise,
    keep_mask,
    make_scheduler,
    resolve_settings,
    run_sampler,
)
from diffusers_mdiffae.models.token_mask import grouped_keep_mask

# -- config defaults pipelines read --------------------------------------------------------

PIPELINE_DEFAULTS = {
    "scaling_factor": 1.0,
    "shift_factor": 0.0,
    "latents_mean": None,
    "latents_std": None,
    "force_upcast": False,
    "decoder_num_inference_steps": 1,
    "decoder_pdg_strength": 1.0,
    "decoder_seed": 0,
    "patch_size": 16,
    "logsnr_min": -10.0,
    "logsnr_max": 10.0,
    "pixel_noise_std": 0.558,
    "log_change_high": 0.0,
    "log_change_low": 0.0,
}


@pytest.mark.parametrize("cls, channels", [(AutoencoderMDiffAE, 64), (AutoencoderSemDisDiffAE, 128)])
def test_constructor_defaults_pipelines_read(cls, channels):
    params = inspect.signature(cls.__init__).parameters
    defaults = {k: p.default for k, p in params.items() if p.default is not inspect.Parameter.empty}
    assert defaults["latent_channels"] == channels
    for k, v in PIPELINE_DEFAULTS.items():
        assert defaults[k] == v, k
    assert len(defaults["block_out_channels"]) == 5  # 2 ** (5 - 1) == 16


@pytest.mark.parametrize(
    "family, channels", [("mdiffae_v1", 64), ("mdiffae_v2", 96), ("irdiffae_v1", 128), ("semdisdiffae", 128)]
)
def test_a_built_model_reports_them_in_its_config_and_attributes(family, channels):
    m = make_tiny(family=family)
    c = m.config
    assert c.latent_channels == channels and c.scaling_factor == 1.0 and c.shift_factor == 0.0
    assert c.latents_mean is None and c.latents_std is None and c.force_upcast is False
    assert m.spatial_compression_ratio == 16 == 2 ** (len(c.block_out_channels) - 1)
    s = m.scheduler.config
    assert (s.logsnr_min, s.logsnr_max, s.pixel_noise_std, s.pdg_strength) == (-10.0, 10.0, 0.558, 1.0)
    assert isinstance(m.scheduler, VPDDIMScheduler)


def test_decode_defaults_come_from_the_config_pdg_only_away_from_1():
    plain = make_tiny().default_decode_settings()
    assert (plain.num_steps, plain.sampler, plain.pdg_strength, plain.strength) == (1, "ddim", None, 1.0)
    guided = make_tiny(decoder_num_inference_steps=4, decoder_pdg_strength=2).default_decode_settings()
    assert (guided.num_steps, guided.pdg_strength) == (4, 2.0) and type(guided.pdg_strength) is float


def test_the_bundled_checkpoint_config():
    c = json.loads((DEMO_MODEL_DIR / "config.json").read_text())
    assert c["_class_name"] == "AutoencoderMDiffAE" and c["latent_channels"] == 64
    assert c["scaling_factor"] == 1.0 and c["shift_factor"] == 0.0 and c["decoder_seed"] == 0
    assert c["decoder_num_inference_steps"] == 1 and c["decoder_pdg_strength"] == 1.0


def test_scheduler_defaults():
    params = inspect.signature(VPDDIMScheduler.__init__).parameters
    assert {k: p.default for k, p in params.items() if k != "self"} == {
        "logsnr_min": -10.0,
        "logsnr_max": 10.0,
        "pixel_noise_std": 0.558,
        "log_change_high": 0.0,
        "log_change_low": 0.0,
        "schedule": "linear",
        "pdg_strength": 1.0,
        "set_alpha_to_one": False,
        "num_train_timesteps": 1000,
    }


def test_published_inference_config_defaults():
    m, ir, f = MDiffAEInferenceConfig(), IRDiffAEInferenceConfig(), FCDMDiffAEInferenceConfig()
    assert (m.num_steps, m.sampler, m.schedule, m.pdg_enabled, m.pdg_strength, m.strength, m.seed) == (
        1,
        "ddim",
        "linear",
        False,
        1.05,
        1.0,
        None,
    )
    assert (ir.pdg_strength, ir.pdg_enabled, ir.num_steps) == (2.0, False, 1)
    assert (f.num_steps, f.sampler, f.schedule, f.pdg, f.pdg_strength, f.strength, f.seed) == (
        1,
        "ddim",
        "linear",
        False,
        2.0,
        1.0,
        None,
    )


# -- settings ------------------------------------------------------------------------------

BASE = DecodeSettings(num_steps=3, sampler="ddim", schedule="linear", pdg_strength=None, strength=1.0)


def test_model_defaults_pass_through_unchanged():
    assert resolve_settings(BASE) == BASE


def test_an_inference_config_overrides_the_defaults_and_guides_when_enabled():
    s = resolve_settings(
        BASE,
        MDiffAEInferenceConfig(
            num_steps=5, sampler="dpmpp_2m", schedule="cosine", pdg_enabled=True, pdg_strength=1.0, strength=0.5
        ),
    )
    assert s == DecodeSettings(5, "dpmpp_2m", "cosine", 1.0, 0.5)  # enabled at 1.0 still guides
    assert resolve_settings(BASE, MDiffAEInferenceConfig(pdg_strength=3.0)).pdg_strength is None  # not enabled
    assert resolve_settings(BASE, FCDMDiffAEInferenceConfig(pdg=True)).pdg_strength == 2.0

    class Minimal:  # a config with only the fields every published one has
        num_steps, sampler, pdg_strength = 2, "ddim", 4.0

    assert resolve_settings(BASE, Minimal()) == DecodeSettings(2, "ddim", "linear", None, 1.0)


def test_keywords_override_an_inference_config():
    cfg = MDiffAEInferenceConfig(num_steps=5, pdg_enabled=True, pdg_strength=1.5, strength=0.5)
    s = resolve_settings(
        BASE, cfg, num_inference_steps=2, pdg_strength=3, sampler="dpmpp_2m", schedule="cosine", strength=0.25
    )
    assert s == DecodeSettings(2, "dpmpp_2m", "cosine", 3.0, 0.25) and isinstance(s.pdg_strength, float)
    assert resolve_settings(BASE, cfg, pdg_strength=1.0).pdg_strength is None  # keyword 1.0 is off
    assert resolve_settings(BASE, pdg_strength=0.0).pdg_strength == 0.0
    assert isinstance(resolve_settings(BASE, strength=1).strength, float)


@pytest.mark.parametrize(
    "kw, match",
    [
        ({"num_inference_steps": 0}, "positive int"),
        ({"num_inference_steps": True}, "positive int"),
        ({"num_inference_steps": 2.0}, "positive int"),
        ({"pdg_strength": True}, "must be a number"),
        ({"pdg_strength": "2"}, "must be a number"),
        ({"pdg_strength": float("inf")}, "must be finite"),
        ({"pdg_strength": float("nan")}, "must be finite"),
        ({"sampler": "euler"}, r"\['ddim', 'dpmpp_2m'\]"),
        ({"schedule": "karras"}, "schedule must be one of"),
        ({"strength": 0.0}, r"in \(0, 1\]"),
        ({"strength": 1.01}, r"in \(0, 1\]"),
        ({"strength": True}, r"in \(0, 1\]"),
        ({"strength": "1"}, r"in \(0, 1\]"),
    ],
)
def test_bad_settings_are_refused(kw, match):
    with pytest.raises(ValueError, match=match):
        resolve_settings(BASE, **kw)


def test_seeds():
    assert check_seed(None) is None and check_seed(0) == 0 and check_seed(2**64 - 1) == 2**64 - 1
    for bad in (-1, 2**64, 1.0, True, "3"):
        with pytest.raises(ValueError, match="my_seed must be"):
            check_seed(bad, "my_seed")


def test_make_scheduler_copies_the_schedule_into_a_fresh_solver():
    base = VPDDIMScheduler(logsnr_min=-8.0, pixel_noise_std=0.3)
    for name, cls in (("ddim", VPDDIMScheduler), ("dpmpp_2m", VPDPMSolverMultistepScheduler)):
        s = make_scheduler(base, name)
        assert type(s) is cls and s is not base
        assert s.config.logsnr_min == -8.0 and s.config.pixel_noise_std == 0.3


# -- noise ---------------------------------------------------------------------------------


def test_per_sample_noise_seeds_one_generator_per_sample():
    noise, gens = draw_noise((3, 2, 4, 4), seed=5)
    one = torch.randn(1, 2, 4, 4, generator=torch.Generator().manual_seed(5))
    assert len(gens) == 3 and all(torch.equal(noise[i : i + 1], one) for i in range(3))
    assert noise.dtype == torch.float32


def test_per_batch_noise_draws_the_whole_tensor_from_one_generator():
    noise, gen = draw_noise((3, 2, 4, 4), seed=5, per_sample=False)
    assert isinstance(gen, torch.Generator)
    assert torch.equal(noise, torch.randn(3, 2, 4, 4, generator=torch.Generator().manual_seed(5)))


def test_a_generator_wins_over_the_seed_and_lists_must_match_the_batch():
    noise, gen = draw_noise((2, 1, 2, 2), generator=torch.Generator().manual_seed(9), seed=5)
    assert torch.equal(noise, torch.randn(2, 1, 2, 2, generator=torch.Generator().manual_seed(9)))
    gens = [torch.Generator().manual_seed(1), torch.Generator().manual_seed(2)]
    noise, back = draw_noise((2, 1, 2, 2), generator=gens)
    assert back is gens and torch.equal(noise[1:], torch.randn(1, 1, 2, 2, generator=torch.Generator().manual_seed(2)))
    with pytest.raises(ValueError, match="got 1 generators for a batch of 2; pass one per sample"):
        draw_noise((2, 1, 2, 2), generator=gens[:1])


def test_without_seed_or_generator_the_global_rng_draws():
    torch.manual_seed(123)
    noise, gen = draw_noise((1, 1, 2, 2))
    torch.manual_seed(123)
    assert gen is None and torch.equal(noise, torch.randn(1, 1, 2, 2))


def test_keep_mask_continues_the_generator_stream():
    g1, g2 = torch.Generator().manual_seed(4), torch.Generator().manual_seed(4)
    assert torch.equal(keep_mask(g1, 2, 4, 6, 0.5, "cpu"), grouped_keep_mask(2, 4, 6, 0.5, generator=g2))


# -- the loop ------------------------------------------------------------------------------


class _Decoder(torch.nn.Module):
    """Records every call; predicts x0 = x_t * k with k fixed per conditioning, so values are checkable."""

    def __init__(self, token=False, drop=False):
        super().__init__()
        self.p = torch.nn.Parameter(torch.zeros(1))
        self.uses_token_mask, self.uses_path_drop = token, drop
        self.calls = []

    def condition_tokens(self, z, mask=None):
        self.calls.append(("cond", None if mask is None else mask.clone()))
        return z * (0.5 if mask is not None else 1.0)

    def denoise(self, x, t, cond, drop_middle_blocks=False):
        self.calls.append(("denoise", x.shape[0], t.clone(), float(cond.mean()), drop_middle_blocks))
        scale = 0.9 if drop_middle_blocks else 1.0
        return x * 0 + cond.mean(dim=(1, 2, 3), keepdim=True) * scale


def _run(decoder, w, steps=2, sampler="ddim", schedule="linear", strength=1.0, batch=2):
    z = torch.ones(batch, 4, 2, 2)
    mask = torch.zeros(batch, 1, 2, 2, dtype=torch.bool)
    noise = torch.randn(batch, 3, 4, 4, generator=torch.Generator().manual_seed(0))
    seen = []
    s = make_scheduler(VPDDIMScheduler(), sampler)
    out = run_sampler(
        decoder,
        s,
        z,
        noise,
        DecodeSettings(steps, sampler, schedule, w, strength),
        mask=mask,
        callback=lambda i, n: seen.append((i, n)),
    )
    return out, seen


def _reference(cond_value, uncond_value, w, steps=2, schedule="linear", strength=1.0, batch=2):
    s = VPDDIMScheduler()
    s.set_timesteps(steps, schedule=schedule, strength=strength)
    noise = torch.randn(batch, 3, 4, 4, generator=torch.Generator().manual_seed(0))
    x = s.initial_state(noise)
    for t in s.timesteps:
        c = torch.full_like(x, cond_value)
        u = None if w is None else torch.full_like(x, uncond_value)
        x = s.step(c, t, x, model_output_uncond=u, pdg_strength=w).prev_sample
    return x


def test_without_guidance_the_network_runs_once_per_step_on_the_plain_tokens():
    d = _Decoder(token=True, drop=True)
    out, seen = _run(d, None)
    denoise = [c for c in d.calls if c[0] == "denoise"]
    assert [c[0] for c in d.calls if c[0] == "cond"] == ["cond"] and len(denoise) == 2
    assert all(c[1] == 2 and c[3] == 1.0 and c[4] is False for c in denoise)
    assert [float(c[2][0]) for c in denoise] == [1.0, 0.5] and seen == [(1, 2), (2, 2)]
    assert torch.allclose(out, _reference(1.0, None, None), atol=1e-6)


def test_token_mask_guidance_runs_both_branches_as_one_batch():
    d = _Decoder(token=True, drop=False)
    out, _ = _run(d, 1.5)
    conds = [c for c in d.calls if c[0] == "cond"]
    assert conds[0][1] is None and conds[1][1] is not None  # the masked tokens use the mask
    denoise = [c for c in d.calls if c[0] == "denoise"]
    assert len(denoise) == 2 and all(c[1] == 4 and c[4] is False for c in denoise)
    assert torch.allclose(out, _reference(1.0, 0.5, 1.5), atol=1e-6)


def test_path_drop_guidance_runs_the_degraded_branch_first_with_the_middle_dropped():
    d = _Decoder(token=False, drop=True)
    out, _ = _run(d, 2.0)
    assert [c for c in d.calls if c[0] == "cond"] == [("cond", None)]  # no mask without token masking
    denoise = [c for c in d.calls if c[0] == "denoise"]
    assert [(c[1], c[3], c[4]) for c in denoise] == [(2, 1.0, True), (2, 1.0, False)] * 2
    assert torch.allclose(out, _reference(1.0, 0.9, 2.0), atol=1e-6)


def test_dual_guidance_masks_tokens_and_drops_the_middle_in_one_degraded_branch():
    d = _Decoder(token=True, drop=True)
    out, _ = _run(d, 1.25)
    denoise = [c for c in d.calls if c[0] == "denoise"]
    assert [(c[1], c[3], c[4]) for c in denoise] == [(2, 0.5, True), (2, 1.0, False)] * 2
    assert torch.allclose(out, _reference(1.0, 0.45, 1.25), atol=1e-6)


def test_the_network_sees_its_own_dtype_and_the_result_is_float32():
    d = _Decoder().to(torch.bfloat16)
    seen = []
    orig = d.denoise

    def denoise(x, t, cond, drop_middle_blocks=False):
        seen.append((x.dtype, cond.dtype))
        return orig(x, t, cond, drop_middle_blocks)

    d.denoise = denoise
    out, _ = _run(d, None, steps=1)
    assert seen == [(torch.bfloat16, torch.bfloat16)] and out.dtype == torch.float32


def test_the_loop_follows_the_settings_schedule_and_strength():
    d = _Decoder()
    out, seen = _run(d, None, steps=3, schedule="cosine", strength=0.5)
    times = [float(c[2][0]) for c in d.calls if c[0] == "denoise"]
    assert times == pytest.approx([0.5, 0.375, 0.125]) and seen == [(1, 3), (2, 3), (3, 3)]
    assert torch.allclose(out, _reference(1.0, None, None, steps=3, schedule="cosine", strength=0.5), atol=1e-6)


def test_token_mask_guidance_splits_an_odd_batch_back_correctly():
    d = _Decoder(token=True, drop=False)
    out, _ = _run(d, 1.5, batch=3)
    assert [c[1] for c in d.calls if c[0] == "denoise"] == [6, 6]
    assert torch.allclose(out, _reference(1.0, 0.5, 1.5, batch=3), atol=1e-6)


@pytest.mark.parametrize("kw", [{"seed": 3}, {"seed": 3, "per_sample": False}, {}])
def test_noise_is_float32_whatever_torch_defaults_to(kw):
    with default_dtype(torch.float64):
        noise, _ = draw_noise((2, 1, 2, 2), **kw)
    assert noise.dtype == torch.float32
