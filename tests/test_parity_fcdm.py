"""Our FCDM decoder, samplers and whitening reproduce the public Canter ``dinac_ae`` code (fixture).

``tests/fixtures/parity/fcdm_decoder.safetensors`` was written by
``tests/fixtures/parity/make_fcdm_fixture.py``, which ran the original code (ComfyUI-Canter commit
0223a6c, derived from data-archetype's ``dinac_ae_d2``) on a tiny random-weight decoder. The
fixture's tensors go through the converter's strict matcher under their original names.
"""

import json
from pathlib import Path

import pytest
import torch
from safetensors import safe_open

from diffusers_mdiffae import AutoencoderSemDisDiffAE, FCDMDiffAE, FCDMDiffAEInferenceConfig
from diffusers_mdiffae.conversion.convert import match_state_dict
from diffusers_mdiffae.conversion.layouts import layout_named, original_config_to_ours

FIXTURE = Path(__file__).parent / "fixtures" / "parity" / "fcdm_decoder.safetensors"
TOL = 1e-5  # float32, contiguous layout (the original's); measured 0.0 here at 2 threads
# Channels-last (our default, for speed) sums in another order: rounding-level, relative to the
# outputs' size (random weights give |x| up to 12 after PDG extrapolation).
REL_TOL_CHANNELS_LAST = 1e-5


@pytest.fixture(scope="module")
def fixture():
    with safe_open(str(FIXTURE), "pt") as f:
        tensors = {k: f.get_tensor(k) for k in f.keys()}
        meta = f.metadata()
    return tensors, json.loads(meta["config"]), json.loads(meta["cases"]), meta


@pytest.fixture(scope="module")
def model(fixture):
    tensors, config, _, _ = fixture
    layout, ours = original_config_to_ours({**config, "encoder_depth": 1}, layout_named("semdisdiffae"))
    assert layout.class_name == "AutoencoderSemDisDiffAE"
    model = AutoencoderSemDisDiffAE(**ours).eval()
    # The fixture holds the decoder and the whitening statistics (Canter's encoder is not FCDM).
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items() if not k.startswith("encoder.")}
    original = {k: v for k, v in tensors.items() if not k.startswith("case.")}
    converted, report = match_state_dict(original, expected, layout.key_rules)
    assert report.ok, report.format()
    assert set(converted) == set(expected)
    model.load_state_dict(converted, strict=False)
    return model.use_channels_last(False)


def test_fixture_names_its_origin(fixture):
    _, _, _, meta = fixture
    assert meta["canter_commit"].startswith("0223a6c")


def test_every_original_tensor_name_is_ours_without_renaming(fixture, model):
    tensors, *_ = fixture
    ours = set(model.state_dict())
    assert {k for k in tensors if not k.startswith("case.")} <= ours


@pytest.mark.parametrize("drop", [False, True])
def test_decoder_forward_matches(fixture, model, drop):
    tensors, *_ = fixture
    with torch.no_grad():
        out = model.decoder(
            tensors["case.forward.x_t"],
            tensors["case.forward.t"],
            tensors["case.forward.latents"],
            drop_middle_blocks=drop,
        )
    ref = tensors["case.forward.output_drop" if drop else "case.forward.output"]
    assert (out - ref).abs().max() < TOL


def _decode(model, tensors, cases, case):
    c = cases[case]
    cfg = FCDMDiffAEInferenceConfig(
        num_steps=c["num_steps"],
        sampler=c["sampler"],
        schedule=c["schedule"],
        pdg=c["pdg"],
        pdg_strength=c["pdg_strength"],
        strength=c["strength"],
        seed=c["seed"],
    )
    return FCDMDiffAE(model).decode(tensors[f"case.{case}.latents"], c["height"], c["width"], inference_config=cfg)


CASES = ["one_step", "four_steps_pdg", "dpmpp_2m", "strength", "cosine"]


@pytest.mark.parametrize("case", CASES)
def test_published_decode_matches(fixture, model, case):
    tensors, _, cases, _ = fixture
    diff = float((_decode(model, tensors, cases, case) - tensors[f"case.{case}.output"]).abs().max())
    print(f"{case}: max |ours - original| = {diff:.2e}")
    assert diff < TOL


@pytest.mark.parametrize("case", CASES)
def test_channels_last_default_stays_at_rounding_level(fixture, model, case):
    tensors, _, cases, _ = fixture
    ref = tensors[f"case.{case}.output"]
    try:
        out = _decode(model.use_channels_last(True), tensors, cases, case)
    finally:
        model.use_channels_last(False)
    diff = float((out - ref).abs().max())
    print(f"{case} (channels-last): max |ours - original| = {diff:.2e}, |original| <= {float(ref.abs().max()):.1f}")
    assert diff <= REL_TOL_CHANNELS_LAST * max(1.0, float(ref.abs().max()))
