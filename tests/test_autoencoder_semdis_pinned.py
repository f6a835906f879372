"""SemDisDiffAE's latent distributions (models/autoencoders/autoencoder_semdis.py), pinned.

A deterministic encoder (``bottleneck_posterior_kind="deterministic"``) gives a point distribution
in diffusers' convention (log-variance at diffusers' floor of -30, std and var exactly 0); the VP
posterior encoder casts the images to the model's dtype like the deterministic one.
"""

import pytest
import torch
from diffusers.models.autoencoders.vae import DiagonalGaussianDistribution
from fixtures.models import images, make_tiny


@pytest.fixture(scope="module")
def deterministic():
    return make_tiny(seed=1, family="semdisdiffae", bottleneck_posterior_kind="deterministic")


def test_a_deterministic_encoder_gives_a_point_distribution_at_the_whitened_latent(deterministic):
    x = images(2, 32, 32, seed=3)
    with torch.no_grad():
        dist = deterministic.encode(x).latent_dist
        z = deterministic.whiten(deterministic.encoder(x))
    latent = deterministic.config.latent_channels
    assert type(dist) is DiagonalGaussianDistribution and dist.deterministic is True
    assert dist.parameters.shape == (2, 2 * latent, 2, 2)
    assert torch.equal(dist.parameters[:, :latent], z)
    assert torch.equal(dist.parameters[:, latent:], torch.full_like(z, -30.0))  # diffusers' log-variance floor
    assert torch.equal(dist.mode(), z) and torch.equal(dist.mean, z)
    assert torch.equal(dist.std, torch.zeros_like(z)) and torch.equal(dist.var, torch.zeros_like(z))
    assert torch.equal(dist.sample(torch.Generator().manual_seed(0)), z)
    assert torch.equal(dist.kl(), torch.zeros(1))


def test_encode_posterior_of_a_deterministic_encoder_is_refused(deterministic):
    with pytest.raises(ValueError) as err:
        deterministic.encode_posterior(images(1, 32, 32))
    assert str(err.value) == "this encoder is deterministic: it has no posterior"


@pytest.mark.parametrize("kind", ["diagonal_gaussian", "deterministic"])
def test_images_are_cast_to_the_models_dtype_before_encoding(kind):
    model = make_tiny(seed=2, family="semdisdiffae", bottleneck_posterior_kind=kind).double()
    x = images(1, 32, 32, seed=4)
    with torch.no_grad():
        from_float = model.encode(x).latent
        from_double = model.encode(x.double()).latent
    assert torch.equal(from_float, from_double)


def test_a_posterior_encoders_forward_is_the_posterior_mode_alpha_times_mean():
    model = make_tiny(seed=3, family="semdisdiffae")
    x = images(1, 32, 32, seed=6)
    with torch.no_grad():
        mean, logsnr = model.encode_posterior(x)
        mode = model.encoder(x)
        latent = model.encode(x).latent
    torch.testing.assert_close(mode, torch.sigmoid(logsnr).sqrt() * mean)
    torch.testing.assert_close(model.whiten(mode), latent)
