"""The training transforms against their definitions: Beta(2, 2) draws, the SiD2 sigmoid weighting,
latent noise mixing, the 2x2 token mask and its ratio, the EMA warm-up, the learning-rate schedule."""

import math

import pytest
import torch

from diffusers_mdiffae import VPDDIMScheduler
from diffusers_mdiffae.models.token_mask import grouped_keep_mask
from diffusers_mdiffae.training import EMA, ObjectiveConfig, diffusion_loss
from diffusers_mdiffae.training.objective import beta22

# -- Beta(2, 2) -----------------------------------------------------------------------------


def test_beta22_is_the_median_of_three_uniforms_from_the_generator():
    got = beta22(50, torch.Generator().manual_seed(7))
    u = torch.rand(50, 3, generator=torch.Generator().manual_seed(7))
    assert got.shape == (50,)
    assert torch.equal(got, u.sort(dim=1).values[:, 1])


def test_beta22_follows_the_beta_2_2_distribution():
    x = beta22(20000, torch.Generator().manual_seed(0)).double().sort().values
    cdf = 3 * x**2 - 2 * x**3  # Beta(2, 2)
    empirical = torch.arange(1, len(x) + 1, dtype=torch.float64) / len(x)
    assert float((empirical - cdf).abs().max()) < 0.015  # Kolmogorov-Smirnov at n = 20000
    assert float(x.min()) >= 0.0 and float(x.max()) <= 1.0


def test_objective_defaults_are_the_documented_ones():
    cfg = ObjectiveConfig()
    assert (cfg.token_mask_prob, cfg.mask_ratio, cfg.latent_noise_prob, cfg.sigmoid_bias) == (0.5, 0.75, 0.1, -8.0)
    assert (cfg.umd_ratio, cfg.umd_mask_ratio, cfg.gradient_weight) == (0.0, 0.9, 0.0)


# -- the loss against a hand computation ----------------------------------------------------


class _Recorder:
    """A stand-in autoencoder: fixed latents, a decoder that records its inputs and answers x_t / 2."""

    def __init__(self, z):
        self.scheduler = VPDDIMScheduler()
        self.z = z
        self.seen = {}
        self.encoder = lambda images: self.z.clone()

        def decoder(x_t, t, z, keep_mask=None):
            self.seen.update(x_t=x_t, t=t, z=z, keep=keep_mask)
            return x_t * 0.5

        self.decoder = decoder


def _by_hand(images, z, seed, cfg):
    """diffusion_loss's definition, drawing from the generator in its documented order."""
    g = torch.Generator().manual_seed(seed)
    b = images.shape[0]
    t = torch.rand(b, generator=g)
    noise = torch.randn(images.shape, generator=g)
    noised = torch.rand(b, generator=g) < cfg.latent_noise_prob
    u = torch.rand(b, 3, generator=g)
    tau = u.sort(dim=1).values[:, 1]
    masked = torch.rand(b, generator=g) < cfg.token_mask_prob
    if noised.any():
        eps_z = torch.randn(z.shape, generator=g)
        z = torch.stack([(1 - tau[i]) * z[i] + tau[i] * eps_z[i] if noised[i] else z[i] for i in range(b)])
    keep = None
    if masked.any():
        keep = grouped_keep_mask(b, z.shape[-2], z.shape[-1], cfg.mask_ratio, generator=g)
        keep = keep | ~masked.view(-1, 1, 1, 1)
    s = VPDDIMScheduler()
    lam = s.logsnr(t)
    alpha, sigma = torch.sigmoid(lam).sqrt(), torch.sigmoid(-lam).sqrt()
    x_t = alpha.view(-1, 1, 1, 1) * images + sigma.view(-1, 1, 1, 1) * 0.558 * noise
    weight = 1 / (1 + torch.exp(-(lam - cfg.sigmoid_bias)))  # SiD2: sigmoid(logsnr - b)
    per_sample = ((x_t * 0.5 - images) ** 2).mean(dim=(1, 2, 3))
    return {
        "t": t,
        "z": z,
        "keep": keep,
        "x_t": x_t,
        "loss": (weight * per_sample).mean(),
        "mse": per_sample.mean(),
        "noised": noised,
        "masked": masked,
        "weight": weight,
    }


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
@pytest.mark.parametrize("probs", [(0.5, 0.5, 0.75), (1.0, 1.0, 0.5), (0.0, 0.0, 0.75)])
def test_loss_equals_its_definition(seed, probs):
    cfg = ObjectiveConfig(token_mask_prob=probs[0], latent_noise_prob=probs[1], mask_ratio=probs[2], sigmoid_bias=-2.0)
    g = torch.Generator().manual_seed(100 + seed)
    images = torch.rand(6, 3, 16, 16, generator=g) * 2 - 1
    z = torch.randn(6, 4, 3, 5, generator=g)
    model = _Recorder(z)
    loss, stats = diffusion_loss(model, images, torch.Generator().manual_seed(seed), cfg)
    want = _by_hand(images, z, seed, cfg)
    assert torch.equal(model.seen["t"], want["t"])
    assert torch.allclose(model.seen["x_t"], want["x_t"], atol=1e-6)
    assert torch.allclose(model.seen["z"], want["z"], atol=1e-6)
    if want["keep"] is None:
        assert model.seen["keep"] is None
    else:
        assert torch.equal(model.seen["keep"], want["keep"])
    assert float(loss) == pytest.approx(float(want["loss"]), rel=1e-5)
    assert stats["weighted"] == pytest.approx(float(want["loss"]), rel=1e-5)
    assert stats["mse"] == pytest.approx(float(want["mse"]), rel=1e-5)


def test_latent_noise_mixes_only_the_drawn_samples_with_their_own_tau():
    cfg = ObjectiveConfig(token_mask_prob=0.0, latent_noise_prob=0.5)
    for seed in range(20):  # find a draw with both kinds of sample
        want = _by_hand(torch.zeros(6, 3, 16, 16), torch.ones(6, 4, 2, 2), seed, cfg)
        if 0 < int(want["noised"].sum()) < 6:
            break
    model = _Recorder(torch.ones(6, 4, 2, 2))
    diffusion_loss(model, torch.zeros(6, 3, 16, 16), torch.Generator().manual_seed(seed), cfg)
    z = model.seen["z"]
    for i in range(6):
        if want["noised"][i]:
            assert not torch.equal(z[i], torch.ones(4, 2, 2))
        else:
            assert torch.equal(z[i], torch.ones(4, 2, 2))  # untouched: mixing weight 0, not tau
    assert torch.allclose(z, want["z"], atol=1e-6)


def test_noised_latents_keep_the_encoder_dtype():
    cfg = ObjectiveConfig(token_mask_prob=0.0, latent_noise_prob=1.0)
    model = _Recorder(torch.ones(2, 4, 2, 2, dtype=torch.bfloat16))
    diffusion_loss(model, torch.zeros(2, 3, 16, 16), torch.Generator().manual_seed(0), cfg)
    assert model.seen["z"].dtype == torch.bfloat16


def test_only_the_drawn_samples_are_token_masked():
    cfg = ObjectiveConfig(token_mask_prob=0.5, latent_noise_prob=0.0)
    for seed in range(20):
        want = _by_hand(torch.zeros(6, 3, 16, 16), torch.ones(6, 4, 4, 4), seed, cfg)
        if 0 < int(want["masked"].sum()) < 6:
            break
    model = _Recorder(torch.ones(6, 4, 4, 4))
    diffusion_loss(model, torch.zeros(6, 3, 16, 16), torch.Generator().manual_seed(seed), cfg)
    keep = model.seen["keep"]
    assert keep.dtype == torch.bool and keep.shape == (6, 1, 4, 4)
    for i in range(6):
        kept = int(keep[i].sum())
        assert kept == (4 if want["masked"][i] else 16)  # one of four kept, or all


# Seed 479's draws 1394 and 1395 are 0.0429 and exactly 0.5 (test_training_data_pinned uses the same
# draw for the crop flip), so a two-sample batch can put a draw of exactly 1/2 on its second sample.
_HALF_SEED, _HALF_AT = 479, 1395


def _second_draw_exactly_one_half(position):
    """A CPU generator whose draws ``position - 1`` and ``position`` (counted from now) are 0.0429 and 0.5."""
    u = torch.rand(_HALF_AT + 1, generator=torch.Generator().manual_seed(_HALF_SEED))
    assert float(u[_HALF_AT - 1]) < 0.5 and float(u[_HALF_AT]) == 0.5
    g = torch.Generator().manual_seed(_HALF_SEED)
    torch.rand(_HALF_AT - position, generator=g)
    return g


# draws for two 3x8x8 images: t 0-1, noise 2-385 (randn takes one draw per value), latent noise
# 386-387, tau 388-393, token mask 394-395, UMD's clean pick 396-397
_TWO_SMALL_IMAGES = torch.zeros(2, 3, 8, 8)


def test_a_latent_noise_draw_equal_to_the_probability_leaves_the_latents_alone():
    # noised with probability exactly p: the draws below p, and not the one equal to it
    cfg = ObjectiveConfig(latent_noise_prob=0.5, token_mask_prob=0.0)
    model = _Recorder(torch.ones(2, 4, 2, 2))
    diffusion_loss(model, _TWO_SMALL_IMAGES, _second_draw_exactly_one_half(387), cfg)
    z = model.seen["z"]
    assert not torch.equal(z[0], torch.ones(4, 2, 2))
    assert torch.equal(z[1], torch.ones(4, 2, 2))


def test_a_token_mask_draw_equal_to_the_probability_keeps_every_token():
    cfg = ObjectiveConfig(token_mask_prob=0.5, latent_noise_prob=0.0)
    model = _Recorder(torch.ones(2, 4, 2, 2))
    diffusion_loss(model, _TWO_SMALL_IMAGES, _second_draw_exactly_one_half(395), cfg)
    assert model.seen["keep"].flatten(1).sum(dim=1).tolist() == [1, 4]  # one of four kept, then all


def test_sid2_weight_is_the_sigmoid_of_logsnr_minus_the_bias():
    """The weight at the pure-noise end with the default bias is sigmoid(-10 + 8) = 0.119 (its docstring)."""
    cfg = ObjectiveConfig(token_mask_prob=0.0, latent_noise_prob=0.0)
    images = torch.zeros(1, 3, 16, 16)
    model = _Recorder(torch.zeros(1, 4, 1, 1))
    # decoder answers x_t / 2, images are 0: per-sample mse = (x_t / 2)^2 mean = sigma^2 0.558^2 mean(noise^2) / 4
    loss, stats = diffusion_loss(model, images, torch.Generator().manual_seed(5), cfg)
    t = model.seen["t"]
    lam = float(VPDDIMScheduler().logsnr(t))
    assert stats["weighted"] == pytest.approx(stats["mse"] / (1 + math.exp(-(lam + 8.0))), rel=1e-5)
    assert 1 / (1 + math.exp(-(-10 + 8))) == pytest.approx(0.1192, abs=1e-4)


# -- token masks ----------------------------------------------------------------------------


@pytest.mark.parametrize("ratio, kept", [(0.75, 1), (0.5, 2), (0.25, 3), (0.0, 4), (0.9, 1), (0.6, 2), (0.4, 2)])
def test_every_2x2_group_keeps_round_4_times_1_minus_ratio_tokens(ratio, kept):
    m = grouped_keep_mask(3, 6, 8, ratio, generator=torch.Generator().manual_seed(0))
    assert m.shape == (3, 1, 6, 8) and m.dtype == torch.bool
    groups = m.view(3, 3, 2, 4, 2).sum(dim=(2, 4))  # [B, gh, gw]
    assert bool((groups == kept).all())


def test_the_mask_pattern_is_the_rank_of_uniform_scores_laid_out_dy_then_dx():
    g = torch.Generator().manual_seed(11)
    m = grouped_keep_mask(2, 4, 6, 0.5, generator=g)
    scores = torch.rand((2, 2, 3, 4), generator=torch.Generator().manual_seed(11))
    ranks = scores.argsort(dim=-1).argsort(dim=-1)
    for b in range(2):
        for gy in range(2):
            for gx in range(3):
                for dy in range(2):
                    for dx in range(2):
                        assert bool(m[b, 0, 2 * gy + dy, 2 * gx + dx]) == bool(ranks[b, gy, gx, dy * 2 + dx] < 2)


def test_the_default_ratio_keeps_one_of_four_and_the_global_rng_draws_without_a_generator():
    torch.manual_seed(21)
    m = grouped_keep_mask(2, 4, 4)
    assert bool((m.view(2, 2, 2, 2, 2).sum(dim=(2, 4)) == 1).all())
    torch.manual_seed(21)
    assert torch.equal(m, grouped_keep_mask(2, 4, 4, 0.75, generator=torch.default_generator))


def test_odd_grids_crop_the_padded_group_grid():
    m = grouped_keep_mask(2, 5, 3, 0.75, generator=torch.Generator().manual_seed(3))
    full = grouped_keep_mask(2, 6, 4, 0.75, generator=torch.Generator().manual_seed(3))
    assert m.shape == (2, 1, 5, 3) and torch.equal(m, full[:, :, :5, :3])
    assert m.is_contiguous()


def test_each_position_of_a_group_is_kept_equally_often():
    m = grouped_keep_mask(400, 8, 8, 0.75, generator=torch.Generator().manual_seed(0)).float()
    per_position = m.view(400, 4, 2, 4, 2).mean(dim=(0, 1, 3))  # [dy, dx]
    assert torch.allclose(per_position, torch.full((2, 2), 0.25), atol=0.02)


def test_a_list_of_generators_draws_each_sample_from_its_own():
    gens = [torch.Generator().manual_seed(s) for s in (4, 9, 4)]
    m = grouped_keep_mask(3, 4, 4, 0.75, generator=gens)
    for i, s in enumerate((4, 9, 4)):
        alone = grouped_keep_mask(1, 4, 4, 0.75, generator=torch.Generator().manual_seed(s))
        assert torch.equal(m[i : i + 1], alone)
    with pytest.raises(ValueError, match="2 generators for a batch of 3"):
        grouped_keep_mask(3, 4, 4, generator=gens[:2])


@pytest.mark.parametrize("ratio", [1.0, -0.01, 1.5])
def test_mask_ratios_outside_0_1_are_refused(ratio):
    with pytest.raises(ValueError, match=r"mask_ratio must be in \[0, 1\)"):
        grouped_keep_mask(1, 2, 2, ratio)


# -- EMA ------------------------------------------------------------------------------------


class _One(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(3))
        self.register_buffer("count", torch.zeros(1, dtype=torch.long))


def test_ema_warm_up_decay_is_min_of_decay_and_1_plus_n_over_10_plus_n():
    model = _One()
    assert EMA(model).decay == 0.999 and EMA(model).num_updates == 0
    ema = EMA(model, decay=0.5)
    assert ema.num_updates == 0 and torch.equal(ema.shadow["w"], torch.zeros(3))
    shadow = 0.0
    for n in range(12):
        value = float(n + 1)
        with torch.no_grad():
            model.w.fill_(value)
        ema.update(model)
        d = min(0.5, (1 + n) / (10 + n))  # 0.1, 0.18, ... until it reaches 0.5 at n = 8
        shadow = d * shadow + (1 - d) * value
        assert float(ema.shadow["w"][0]) == pytest.approx(shadow, rel=1e-6)
        assert ema.num_updates == n + 1


def test_ema_shadows_are_float32_copies_of_floating_parameters_only():
    model = _One().to(torch.bfloat16)
    ema = EMA(model, decay=0.9)
    assert list(ema.shadow) == ["w"] and ema.shadow["w"].dtype == torch.float32
    with torch.no_grad():
        model.w.fill_(1.0)
    assert float(ema.shadow["w"][0]) == 0.0  # a copy, not a view
    ema.update(model)
    assert float(ema.shadow["w"][0]) == pytest.approx(0.9)  # first decay 1/10
    target = _One().to(torch.bfloat16)
    ema.copy_to(target)
    assert target.w.dtype == torch.bfloat16 and float(target.w.detach()[0]) == pytest.approx(0.9, abs=4e-3)


def test_averaged_model_holds_the_averages_and_leaves_the_model_alone():
    from fixtures.models import make_tiny

    model = make_tiny()
    ema = EMA(model, decay=0.9)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    ema.update(model)
    avg = ema.averaged_model(model)
    assert type(avg) is type(model) and not avg.training
    for k, p in avg.named_parameters():
        assert torch.allclose(p, before[k] + 0.9, atol=1e-5), k
    for k, v in model.state_dict().items():
        if v.is_floating_point() and k in dict(model.named_parameters()):
            assert torch.allclose(v, before[k] + 1.0), k


# -- UMD: the noise-free masked step --------------------------------------------------------


def test_patch_keep_mask_keeps_the_same_count_in_every_sample():
    from diffusers_mdiffae.training.objective import patch_keep_mask

    for ratio, n_keep in ((0.9, 2), (0.75, 4), (0.0, 16), (0.99, 1)):
        keep = patch_keep_mask(5, 4, 4, ratio, torch.Generator().manual_seed(1))
        assert keep.shape == (5, 1, 4, 4) and keep.dtype == torch.bool
        assert keep.flatten(1).sum(dim=1).tolist() == [n_keep] * 5
    a = patch_keep_mask(64, 4, 4, 0.5, torch.Generator().manual_seed(2))
    assert len({tuple(row.tolist()) for row in a.flatten(1)}) > 32  # drawn, not a fixed pattern


def test_patch_keep_mask_keeps_the_lowest_ranks_of_one_draw_from_the_generator_per_cell():
    from diffusers_mdiffae.training.objective import patch_keep_mask

    for batch, h, w, ratio in ((3, 4, 5, 0.6), (2, 3, 3, 0.5), (1, 2, 2, 0.99)):
        g = torch.Generator().manual_seed(batch + h)
        got = patch_keep_mask(batch, h, w, ratio, g)
        ref = torch.Generator().manual_seed(batch + h)
        scores = torch.rand(batch, h * w, generator=ref)
        n_keep = max(1, round(h * w * (1 - ratio)))
        lowest = scores.argsort(dim=1)[:, :n_keep]
        want = torch.zeros(batch, h * w, dtype=torch.bool).scatter_(1, lowest, True).view(batch, 1, h, w)
        assert torch.equal(got, want)
        assert torch.equal(torch.rand(3, generator=g), torch.rand(3, generator=ref))  # one draw per cell
    torch.manual_seed(0)
    a = patch_keep_mask(4, 4, 4, 0.5, torch.Generator().manual_seed(5))
    torch.manual_seed(1)  # the global generator plays no part
    assert torch.equal(a, patch_keep_mask(4, 4, 4, 0.5, torch.Generator().manual_seed(5)))


def test_umd_zero_leaves_the_published_objective_and_its_draws_alone():
    images = torch.rand(3, 3, 32, 32, generator=torch.Generator().manual_seed(0)) * 2 - 1
    z = torch.randn(3, 4, 2, 2, generator=torch.Generator().manual_seed(1))
    losses = []
    for cfg in (ObjectiveConfig(), ObjectiveConfig(umd_ratio=0.0, umd_mask_ratio=0.5)):
        model = _Recorder(z)
        model.config = type("C", (), {"patch_size": 16})()
        losses.append(diffusion_loss(model, images, torch.Generator().manual_seed(4), cfg)[0])
    assert torch.equal(losses[0], losses[1])


def test_umd_step_feeds_the_clean_image_with_blanked_patches_at_t_zero():
    p = 16
    images = torch.rand(4, 3, 64, 64, generator=torch.Generator().manual_seed(0)) * 2 - 1
    z = torch.randn(4, 4, 4, 4, generator=torch.Generator().manual_seed(1))
    model = _Recorder(z)
    model.config = type("C", (), {"patch_size": p})()
    cfg = ObjectiveConfig(umd_ratio=1.0, umd_mask_ratio=0.75, token_mask_prob=0.0, latent_noise_prob=0.0)
    loss, _ = diffusion_loss(model, images, torch.Generator().manual_seed(3), cfg)
    x_t, t = model.seen["x_t"], model.seen["t"]
    assert torch.equal(t, torch.zeros(4))
    cells = (x_t != 0).any(dim=1, keepdim=True).float()
    cells = torch.nn.functional.avg_pool2d(cells, p)  # 1 where a patch is visible, 0 where blanked
    assert cells.flatten(1).sum(dim=1).tolist() == [4.0] * 4  # 16 patches, 75 % blanked
    visible = cells.repeat_interleave(p, -2).repeat_interleave(p, -1).bool()
    assert torch.equal(x_t[visible.expand_as(x_t)], images[visible.expand_as(images)])  # no noise added
    s = VPDDIMScheduler()
    weight = torch.sigmoid(s.logsnr(torch.zeros(4)) - cfg.sigmoid_bias)
    expected = (weight * ((x_t * 0.5 - images) ** 2).mean(dim=(1, 2, 3))).mean()
    assert torch.allclose(loss, expected, rtol=1e-6, atol=0)


def test_umd_draws_follow_the_published_ones_from_the_same_generator_on_a_wide_image():
    """Which samples are clean, then the patch mask over the whole (not square) image, both from ``generator``."""
    from diffusers_mdiffae.training.objective import patch_keep_mask  # pinned on its own above

    p, b = 16, 6
    images = torch.rand(b, 3, 32, 48, generator=torch.Generator().manual_seed(0)) * 2 - 1
    model = _Recorder(torch.zeros(b, 4, 2, 3))
    model.config = type("C", (), {"patch_size": p})()
    cfg = ObjectiveConfig(umd_ratio=0.5, umd_mask_ratio=0.5, token_mask_prob=0.0, latent_noise_prob=0.0)
    diffusion_loss(model, images, torch.Generator().manual_seed(7), cfg)

    g = torch.Generator().manual_seed(7)
    t = torch.rand(b, generator=g)
    noise = torch.randn(images.shape, generator=g)
    torch.rand(b, generator=g), torch.rand(b, 3, generator=g), torch.rand(b, generator=g)  # the published draws
    clean = torch.rand(b, generator=g) < 0.5
    cells = patch_keep_mask(b, 2, 3, 0.5, g)  # 2 rows, 3 columns of patches
    assert 0 < int(clean.sum()) < b  # both kinds of sample in the batch
    visible = cells.repeat_interleave(p, dim=-2).repeat_interleave(p, dim=-1).float()
    lam = VPDDIMScheduler().logsnr(t)
    alpha, sigma = torch.sigmoid(lam).sqrt().view(-1, 1, 1, 1), torch.sigmoid(-lam).sqrt().view(-1, 1, 1, 1)
    noisy = alpha * images + sigma * 0.558 * noise
    want = torch.where(clean.view(-1, 1, 1, 1), images * visible, noisy)
    assert torch.equal(model.seen["t"], torch.where(clean, torch.zeros(b), t))
    torch.testing.assert_close(model.seen["x_t"], want, rtol=1e-5, atol=1e-6)


def test_umd_ratio_picks_that_fraction_of_samples():
    images = torch.zeros(4000, 3, 16, 16)
    model = _Recorder(torch.zeros(4000, 1, 1, 1))
    model.config = type("C", (), {"patch_size": 16})()
    cfg = ObjectiveConfig(umd_ratio=0.3, token_mask_prob=0.0, latent_noise_prob=0.0)
    diffusion_loss(model, images, torch.Generator().manual_seed(0), cfg)
    share = float((model.seen["t"] == 0).float().mean())
    assert abs(share - 0.3) < 0.03


def test_a_umd_draw_equal_to_the_ratio_keeps_the_sample_noisy():
    model = _Recorder(torch.zeros(2, 4, 1, 1))
    model.config = type("C", (), {"patch_size": 8})()
    cfg = ObjectiveConfig(umd_ratio=0.5, token_mask_prob=0.0, latent_noise_prob=0.0)
    g = _second_draw_exactly_one_half(397)
    t = torch.rand(2, generator=_second_draw_exactly_one_half(397))  # the generator's first draws, the times
    diffusion_loss(model, _TWO_SMALL_IMAGES, g, cfg)
    assert torch.equal(model.seen["t"], torch.stack([torch.tensor(0.0), t[1]]))


@pytest.mark.parametrize(
    "field,value",
    [("umd_ratio", -0.1), ("umd_ratio", 1.5), ("umd_mask_ratio", 1.0), ("token_mask_prob", 2), ("mask_ratio", -1)],
)
def test_objective_refuses_ratios_outside_their_range_by_name(field, value):
    with pytest.raises(ValueError, match=field):
        ObjectiveConfig(**{field: value})


def test_objective_accepts_the_ends_of_its_ranges():
    """Probabilities take 0 and 1; mask ratios take 0 (nothing masked) but not 1."""
    cfg = ObjectiveConfig(
        token_mask_prob=1, latent_noise_prob=0.0, umd_ratio=1.0, mask_ratio=0.0, umd_mask_ratio=0, gradient_weight=0
    )
    assert (cfg.token_mask_prob, cfg.umd_ratio, cfg.mask_ratio, cfg.umd_mask_ratio) == (1, 1.0, 0.0, 0)


# -- the gradient penalty (gradient_weight) ---------------------------------------------------


def _gradient_by_hand(error):
    """Loops over every neighbour pair of ``[B, C, H, W]``: mean squared step per axis, the two axes summed."""
    b, c, h, w = error.shape
    out = []
    for s in range(b):
        across = [
            float(error[s, ch, r, i + 1] - error[s, ch, r, i]) ** 2
            for ch in range(c)
            for r in range(h)
            for i in range(w - 1)
        ]
        down = [
            float(error[s, ch, i + 1, r] - error[s, ch, i, r]) ** 2
            for ch in range(c)
            for r in range(w)
            for i in range(h - 1)
        ]
        out.append(sum(across) / max(len(across), 1) + sum(down) / max(len(down), 1))
    return torch.tensor(out)


@pytest.mark.parametrize(
    "shape", [(2, 3, 8, 12), (1, 2, 9, 7), (3, 1, 4, 16), (1, 1, 1, 5), (1, 1, 2, 3), (2, 1, 3, 2)]
)
def test_gradient_penalty_equals_its_definition_on_uneven_sizes(shape):
    from diffusers_mdiffae.training.objective import gradient_penalty

    error = torch.randn(shape, generator=torch.Generator().manual_seed(sum(shape)))
    assert torch.allclose(gradient_penalty(error), _gradient_by_hand(error).float(), rtol=1e-5, atol=1e-7)


def test_gradient_penalty_sees_a_step_that_mse_barely_sees():
    from diffusers_mdiffae.training.objective import gradient_penalty

    step = torch.zeros(1, 1, 32, 32)
    step[..., 16:] = 0.2  # one vertical edge of height 0.2 across all 32 rows
    ramp = torch.linspace(0, 0.2, 32).view(1, 1, 1, 32).expand(1, 1, 32, 32)
    assert float(gradient_penalty(step)) == pytest.approx(0.04 / 31)
    assert float(gradient_penalty(ramp)) == pytest.approx((0.2 / 31) ** 2, rel=1e-4)
    assert gradient_penalty(torch.full((2, 3, 8, 8), 0.7)).tolist() == [0.0, 0.0]


def test_gradient_weight_adds_its_penalty_to_the_loss_and_zero_keeps_the_published_loss():
    from diffusers_mdiffae.training.objective import gradient_penalty

    images = torch.rand(3, 3, 32, 32, generator=torch.Generator().manual_seed(0)) * 2 - 1
    z = torch.randn(3, 4, 2, 2, generator=torch.Generator().manual_seed(1))
    results = {}
    for name, cfg in {
        "plain": ObjectiveConfig(),
        "zero": ObjectiveConfig(gradient_weight=0.0),
        "weighted": ObjectiveConfig(gradient_weight=2.5),
    }.items():
        model = _Recorder(z)
        loss, stats = diffusion_loss(model, images, torch.Generator().manual_seed(4), cfg)
        results[name] = (loss, stats, model.seen["x_t"], model.seen["t"])
    assert torch.equal(results["plain"][0], results["zero"][0])
    loss, stats, x_t, t = results["weighted"]
    error = x_t * 0.5 - images
    weight = torch.sigmoid(VPDDIMScheduler().logsnr(t) + 8.0)
    per_sample = error.square().mean(dim=(1, 2, 3)) + 2.5 * gradient_penalty(error)
    assert float(loss) == pytest.approx(float((weight * per_sample).mean()), rel=1e-6)
    assert torch.equal(results["plain"][2], x_t)  # the same draws
    assert stats["mse"] == pytest.approx(float(error.square().mean()), rel=1e-6)  # the plain MSE, reported


@pytest.mark.parametrize("value", [-0.5, math.inf, math.nan, True, "1"])
def test_gradient_weight_must_be_finite_and_non_negative(value):
    with pytest.raises(ValueError, match="gradient_weight"):
        ObjectiveConfig(gradient_weight=value)


# -- the learning-rate schedule -----------------------------------------------------------------


def _schedule(**kw):
    from diffusers_mdiffae.training import TrainConfig

    return TrainConfig(data="d", output_dir="o", **kw)


def test_lr_warms_up_linearly_then_follows_a_cosine_down_to_the_floor_and_stays_there():
    from diffusers_mdiffae.training.loop import _lr_factor

    cfg = _schedule(steps=10, warmup_steps=4, lr_min_ratio=0.2)
    got = [_lr_factor(step, cfg) for step in range(14)]
    want = [0.25, 0.5, 0.75, 1.0]  # (step + 1) / warmup: the first step already moves
    for step in range(4, 14):
        progress = min((step - 4) / 6, 1.0)
        want.append(0.2 + 0.8 * (1 + math.cos(math.pi * progress)) / 2)
    assert got == pytest.approx(want, abs=1e-12)
    assert got[4] == 1.0 and got[7] == pytest.approx(0.6) and got[10:] == pytest.approx([0.2] * 4)


def test_lr_without_warm_up_starts_at_full_rate_and_a_run_of_warm_up_only_never_divides_by_zero():
    from diffusers_mdiffae.training.loop import _lr_factor

    cfg = _schedule(steps=4, warmup_steps=0, lr_min_ratio=0.0)
    assert [_lr_factor(s, cfg) for s in range(5)] == pytest.approx([1.0, 0.8535534, 0.5, 0.1464466, 0.0])
    short = _schedule(steps=3, warmup_steps=3, lr_min_ratio=0.5)
    assert [_lr_factor(s, short) for s in range(5)] == pytest.approx([1 / 3, 2 / 3, 1.0, 1.0, 0.5])
    longer = _schedule(steps=2, warmup_steps=5, lr_min_ratio=0.5)  # the warm-up outlasts the run
    assert [_lr_factor(s, longer) for s in range(2)] == pytest.approx([0.2, 0.4])
