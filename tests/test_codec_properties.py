"""Shape and seeding invariants of every family member, for any admissible size (hypothesis, tiny models)."""

import functools

import pytest
import torch
from fixtures.models import FAMILIES, images, make_tiny
from hypothesis import given, settings
from hypothesis import strategies as st

from diffusers_mdiffae.checks import check_images, check_latents

FAST = settings(max_examples=25, deadline=None)
MODEL = settings(max_examples=12, deadline=None)  # each example runs a (tiny) network
FAMILY = st.sampled_from(sorted(FAMILIES))


@functools.lru_cache(maxsize=None)
def tiny(family):
    return make_tiny(family=family)


@MODEL
@given(FAMILY, st.integers(1, 3), st.integers(1, 3), st.integers(1, 2))
def test_sizes_that_are_multiples_of_16_encode_to_a_sixteenth_and_decode_back(family, hb, wb, batch):
    model = tiny(family)
    h, w = 16 * hb, 16 * wb
    with torch.no_grad():
        z = model.encode(images(batch, h, w, seed=hb * 7 + wb)).latent_dist.mode()
        assert z.shape == (batch, model.config.latent_channels, hb, wb)
        x = model.decode(z).sample
    assert x.shape == (batch, 3, h, w) and x.dtype == torch.float32
    assert bool(torch.isfinite(x).all())


@FAST
@given(
    FAMILY,
    st.integers(0, 4),
    st.integers(0, 4),
    st.integers(1, 15),
    st.integers(1, 15),
    st.sampled_from(["height", "width", "both"]),
)
def test_any_other_size_is_refused_with_a_sentence_naming_it(family, hb, wb, dh, dw, off):
    h = 16 * hb + (dh if off in ("height", "both") else 0) or 16
    w = 16 * wb + (dw if off in ("width", "both") else 0) or 16
    with pytest.raises(ValueError) as e:
        tiny(family).encode(torch.zeros(1, 3, h, w))
    message = str(e.value)
    assert f"multiples of 16, got {h}x{w}" in message
    lower = (h // 16 * 16 or 16, w // 16 * 16 or 16)
    upper = (-(-h // 16) * 16, -(-w // 16) * 16)
    assert f"pad or crop to {lower[0]}x{lower[1]}" in message and f"(or {upper[0]}x{upper[1]})" in message


@MODEL
@given(FAMILY, st.integers(2, 3), st.data())
def test_a_sample_decodes_alone_as_it_does_inside_any_batch(family, batch, data):
    """Without a generator every sample draws its own noise: row i of a batch decode is sample i decoded alone."""
    model = tiny(family)
    steps = data.draw(st.integers(1, 2))
    pdg = data.draw(st.sampled_from([1.0, 1.5]))
    order = data.draw(st.permutations(range(batch)))
    i = data.draw(st.integers(0, batch - 1))
    with torch.no_grad():
        z = model.encode(images(batch, 32, 16, seed=batch)).latent_dist.mode()
        z = z[list(order)]
        whole = model.decode(z, num_inference_steps=steps, pdg_strength=pdg).sample
        alone = model.decode(z[i : i + 1], num_inference_steps=steps, pdg_strength=pdg).sample
    assert torch.allclose(whole[i : i + 1], alone, atol=1e-5)


@FAST
@given(st.integers(1, 3), st.integers(1, 5), st.integers(1, 5), st.integers(1, 8))
def test_image_checks_accept_exactly_finite_float_nchw_of_the_right_channels(b, hb, wb, p):
    check_images(torch.zeros(b, 3, hb * p, wb * p), 3, p)
    with pytest.raises(ValueError, match="channels in dim 1"):
        check_images(torch.zeros(b, 4, hb * p, wb * p), 3, p)
    bad = torch.zeros(b, 3, hb * p, wb * p)
    bad[-1, -1, -1, -1] = float("nan")
    with pytest.raises(ValueError, match="contains 1 NaN or infinite values"):
        check_images(bad, 3, p)


@FAST
@given(st.integers(1, 3), st.integers(1, 6), st.integers(1, 6), st.integers(1, 130))
def test_latent_checks_name_the_expected_channel_count(b, h, w, c):
    check_latents(torch.zeros(b, c, h, w), c)
    with pytest.raises(ValueError, match=f"latents must have {c} channels in dim 1, got shape \\({b}, {c + 1}, "):
        check_latents(torch.zeros(b, c + 1, h, w), c)
    z = torch.zeros(b, c, h, w)
    z[0, 0, 0, 0] = float("inf")
    z[-1, -1, -1, -1] = float("nan")
    n_bad = 1 if z.numel() == 1 else 2
    with pytest.raises(ValueError, match=f"latents contains {n_bad} NaN or infinite values"):
        check_latents(z, c)
