"""The latent PCA preview against a float64 numpy computation of its definition, and its invariances."""

import numpy as np
import pytest
import torch

from diffusers_mdiffae.latent_pca import latent_pca_rgb


def _by_hand(latents, quantile=0.01):
    b, c, h, w = latents.shape
    out = np.full((b, 3, h, w), 0.5)
    for i in range(b):
        x = latents[i].double().numpy().reshape(c, h * w).T
        x = x - x.mean(axis=0, keepdims=True)
        if h * w < 2 or np.abs(x).max() == 0:
            continue
        _, _, vh = np.linalg.svd(x, full_matrices=False)
        k = min(3, vh.shape[0])
        dirs = vh[:k]
        signs = np.sign(dirs[np.arange(k), np.abs(dirs).argmax(axis=1)])
        proj = x @ (dirs * signs[:, None]).T
        lo, hi = np.quantile(proj, quantile, axis=0), np.quantile(proj, 1 - quantile, axis=0)
        proj = np.clip((proj - lo) / np.maximum(hi - lo, 1e-8), 0, 1)
        out[i, :k] = proj.T.reshape(k, h, w)
    return out


def _latents(b=2, c=8, h=6, w=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    # distinct variances per channel, so the principal directions are well separated
    return torch.randn(b, c, h, w, generator=g) * torch.linspace(3.0, 0.2, c).view(1, c, 1, 1)


@pytest.mark.parametrize("quantile", [0.01, 0.1, 0.0])
def test_matches_the_definition_computed_in_float64(quantile):
    z = _latents()
    got = latent_pca_rgb(z, quantile=quantile)
    assert got.shape == (2, 3, 6, 5) and got.dtype == torch.float32
    assert np.allclose(got.numpy(), _by_hand(z, quantile), atol=2e-4)


def test_stretch_reaches_both_ends_of_the_range():
    got = latent_pca_rgb(_latents(seed=1), quantile=0.0)
    flat = got.view(2, 3, -1)
    assert torch.allclose(flat.min(dim=-1).values, torch.zeros(2, 3), atol=1e-6)
    assert torch.allclose(flat.max(dim=-1).values, torch.ones(2, 3), atol=1e-6)


def test_the_largest_loading_of_each_direction_is_positive():
    # one channel carries a clear gradient along the width: its component must increase with it
    z = torch.zeros(1, 4, 3, 8)
    z[0, 2] = torch.linspace(-4, 4, 8).expand(3, 8)
    z[0, 0] = 0.01 * torch.randn(3, 8, generator=torch.Generator().manual_seed(0))
    got = latent_pca_rgb(z, quantile=0.0)[0, 0]
    assert bool((got[:, 1:] > got[:, :-1]).all())
    assert float(got[:, -1].min()) == pytest.approx(1.0, abs=1e-5) and float(got[:, 0].max()) == pytest.approx(
        0.0, abs=1e-5
    )
    flipped = latent_pca_rgb(-z, quantile=0.0)[0, 0]
    assert torch.allclose(flipped, 1 - got, atol=1e-5)  # the colours follow the data, not the SVD's sign


def test_invariant_to_positive_scale_and_offset_and_equivariant_to_positions():
    z = _latents(b=1, seed=2)
    ref = latent_pca_rgb(z)
    assert torch.allclose(latent_pca_rgb(z * 7.5 + torch.randn(1, 8, 1, 1)), ref, atol=1e-4)
    assert torch.allclose(latent_pca_rgb(z * 1e-3), ref, atol=1e-3)  # small latents are stretched just the same
    perm = torch.randperm(30, generator=torch.Generator().manual_seed(0))
    moved = z.view(1, 8, 30)[:, :, perm].view(1, 8, 6, 5)
    assert torch.allclose(
        latent_pca_rgb(moved, quantile=0.0).view(1, 3, 30),
        latent_pca_rgb(z, quantile=0.0).view(1, 3, 30)[:, :, perm],
        atol=1e-4,
    )


def test_each_image_is_projected_on_its_own():
    z = _latents(b=3, seed=3)
    whole = latent_pca_rgb(z)
    for i in range(3):
        assert torch.allclose(whole[i : i + 1], latent_pca_rgb(z[i : i + 1]), atol=1e-6)


def test_degenerate_inputs_stay_grey():
    assert torch.equal(latent_pca_rgb(torch.full((2, 4, 3, 3), 2.5)), torch.full((2, 3, 3, 3), 0.5))
    assert torch.equal(latent_pca_rgb(torch.randn(1, 4, 1, 1)), torch.full((1, 3, 1, 1), 0.5))
    two = latent_pca_rgb(_latents(b=1, c=2, seed=4), quantile=0.0)
    assert torch.equal(two[:, 2], torch.full((1, 6, 5), 0.5))  # two components: blue stays at 0.5
    assert float(two[:, :2].min()) == 0.0 and float(two[:, :2].max()) == 1.0
    one = latent_pca_rgb(_latents(b=1, c=1, seed=5), quantile=0.0)
    assert torch.equal(one[:, 1:], torch.full((1, 2, 6, 5), 0.5))
    mixed = latent_pca_rgb(torch.stack([torch.zeros(4, 3, 3), torch.randn(4, 3, 3)]))
    assert torch.equal(mixed[0], torch.full((3, 3, 3), 0.5)) and not torch.equal(mixed[1], mixed[0])


def test_two_positions_are_enough_and_rank_3_is_required_for_three_colours():
    z = torch.tensor([[[[1.0, -1.0]], [[2.0, 0.0]], [[0.0, 0.0]]]])  # [1, 3, 1, 2]
    got = latent_pca_rgb(z, quantile=0.0)
    assert got.shape == (1, 3, 1, 2) and sorted(got[0, 0, 0].tolist()) == [0.0, 1.0]
    assert torch.equal(got[0, 2], torch.full((1, 2), 0.5))  # two positions: at most two directions


@pytest.mark.parametrize("shape", [(4, 3, 3), (1, 1, 4, 3, 3), (4,)])
def test_anything_but_rank_4_is_refused(shape):
    with pytest.raises(ValueError, match=r"latents must be \[B, C, h, w\], got shape"):
        latent_pca_rgb(torch.zeros(shape))


def test_gradients_and_dtypes_do_not_leak():
    z = _latents(b=1).half().requires_grad_(False)
    got = latent_pca_rgb(z)
    assert got.dtype == torch.float32 and not got.requires_grad
    zg = _latents(b=1).requires_grad_(True)
    assert not latent_pca_rgb(zg).requires_grad
