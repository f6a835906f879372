"""The MAETok / SoftVQ-VAE / VMAE parity fixtures are intact and self-consistent.

``tests/fixtures/parity/{softvq,maetok,maetok_ape,vmae}.safetensors`` were written by
``make_maetok_fixture.py`` / ``make_vmae_fixture.py`` from the original public code (see their
docstrings). These tests need no original code and no implementation: they pin the files'
layout (metadata, key roots, shapes implied by the recorded config) so a future parity test can
rely on it, and they catch a truncated or hand-edited fixture.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
from safetensors import safe_open

PARITY = Path(__file__).parent / "fixtures" / "parity"
CT_FILES = {"softvq": "SoftVQModel", "maetok": "AEModel", "maetok_ape": "AEModel"}
CT_ROOTS = ("encoder.", "decoder.", "quant_conv.", "post_quant_conv.", "quantize.")
VMAE_ROOTS = (
    "pos_embed",
    "decoder_pos_embed",
    "patch_embed.",
    "blocks.",
    "norm.",
    "to_latent.",
    "from_latent.",
    "decoder_embed.",
    "decoder_blocks.",
    "decoder_norm.",
    "decoder_pred.",
)
BUFFERS = ("encoder.freqs_t_x", "encoder.freqs_t_y", "decoder.freqs_t_x", "decoder.freqs_t_y")


def _read(name: str):
    path = PARITY / f"{name}.safetensors"
    with safe_open(str(path), framework="pt") as f:
        return path, f.metadata(), {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (safe_open is not iterable)


def _common(path: Path, meta: dict, tensors: dict, roots: tuple) -> dict:
    assert path.stat().st_size < 1024 * 1024
    assert meta["format"] == "diffusers-mdiffae parity fixture v1"
    assert re.fullmatch(r"[0-9a-f]{40}", meta["source_commit"])
    assert meta["torch_version"].startswith("2.13.0")
    assert int(meta["torch_num_threads"]) >= 1
    state = {k: v for k, v in tensors.items() if not k.startswith("case.")}
    assert state and all(k.startswith(roots) for k in state), sorted(k for k in state if not k.startswith(roots))
    for key, value in tensors.items():
        assert value.dtype == torch.float32, key
        assert torch.isfinite(value).all(), key
    for key, value in state.items():  # every parameter randomised: nothing constant
        if key not in BUFFERS and value.numel() > 1:
            assert value.std() > 0, key
    return state


@pytest.mark.parametrize("name", sorted(CT_FILES))
def test_continuous_tokenizer_fixture(name):
    path, meta, tensors = _read(name)
    state = _common(path, meta, tensors, CT_ROOTS)
    assert meta["variant"] == name and meta["model_class"] == CT_FILES[name]
    assert meta["source_repo"] == "Hhhhhhao/continuous_tokenizer"
    cfg = json.loads(meta["config"])
    vit = json.loads(meta["vit_overrides"])
    enc, dec = vit[cfg["encoder_model"]], vit[cfg["decoder_model"]]
    n, d, size, p = cfg["num_latent_tokens"], cfg["codebook_embed_dim"], cfg["image_size"], cfg["enc_patch_size"]
    assert tensors["case.encode.images"].shape == (2, 3, size, size)
    assert tensors["case.encode.latents"].shape == (2, n, d)
    assert tensors["case.decode.latents"].shape == (2, n, d)
    assert tensors["case.decode.images"].shape == (2, 3, size, size)
    assert tensors["case.roundtrip.images"].shape == (2, 3, size, size)
    assert state["encoder.latent_tokens"].shape == (1, n, enc["embed_dim"])
    assert state["encoder.model.pos_embed"].shape == (1, 1 + (size // p) ** 2, enc["embed_dim"])
    assert state["quant_conv.weight"].shape == (d, enc["embed_dim"])
    assert state["post_quant_conv.weight"].shape == (dec["embed_dim"], d)
    assert state["decoder.to_pixel.model.weight"].shape == (3 * p * p, dec["embed_dim"])
    assert sum(k.startswith("encoder.model.blocks.") and k.endswith(".ls1.gamma") for k in state) == enc["depth"]
    if name == "softvq":
        assert state["quantize.embedding"].shape == (cfg["num_codebooks"], cfg["codebook_size"], d)
        assert tensors["case.encode.pre_quant"].shape == (2, n, d)
        assert (tensors["case.encode.latents"].norm(dim=-1) <= 1.0 + 1e-5).all()  # convex mix of unit codes
    else:
        assert not any(k.startswith("quantize.") for k in state)
        assert ("encoder.freqs" in state) == (cfg["use_rope"] and cfg["rope_mixed"])
        assert state["encoder.mask_token"].shape == (1, 1, enc["embed_dim"])  # enc_token_drop > 0


def test_vmae_fixture():
    path, meta, tensors = _read("vmae")
    state = _common(path, meta, tensors, VMAE_ROOTS)
    assert meta["source_repo"] == "isno0907/ldmae"
    cfg = json.loads(meta["config"])
    size, p, c, dim = cfg["img_size"], cfg["patch_size"], cfg["latent_dim"], cfg["embed_dim"]
    h = size // p
    assert state["pos_embed"].shape == (1, h * h, dim)
    assert state["to_latent.weight"].shape == (2 * c, dim)
    assert state["from_latent.weight"].shape == (cfg["decoder_embed_dim"], c)
    assert state["decoder_pred.conv_smoother.weight"].shape == (3, 3, 3, 3)
    moments = tensors["case.encode.moments"]
    assert moments.shape == (2, 2 * c, h, h)
    mean, logvar = moments[:, :c], moments[:, c:]
    assert torch.equal(tensors["case.encode.latents"], mean)
    assert torch.equal(tensors["case.encode.std"], torch.exp(0.5 * logvar.clamp(-30.0, 20.0)))
    expected = tensors["case.encode.latents"] + tensors["case.encode.std"] * tensors["case.encode.noise"]
    assert torch.equal(tensors["case.encode.sample"], expected)
    clamped = json.loads(meta["clamped_logvar_channels"])
    assert clamped["above_20"] and clamped["below_-30"]
    assert tensors["case.decode.images"].shape == (2, 3, size, size)
    assert tensors["case.roundtrip.images"].shape == (2, 3, size, size)
