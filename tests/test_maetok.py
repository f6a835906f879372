"""MAETok / SoftVQ-VAE: parity with the original code, strict loading of published folders, input checks.

The references are ``tests/fixtures/parity/{maetok,maetok_ape,softvq}.safetensors``, written by
``make_maetok_fixture.py`` from the original ``Hhhhhhao/continuous_tokenizer`` code (tiny shrunk
DINOv2 recipes, seeded random weights). Each test writes the fixture's state dict and config as
the original ``PyTorchModelHubMixin`` would (``config.json`` with the ``ModelArgs`` fields +
``model.safetensors``) and loads that folder through ``from_pretrained``, strictly.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from fixtures.models import public_config
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from diffusers_mdiffae import AutoencoderMAETok, AutoencoderSoftVQ, LatentTokenEncoderOutput
from diffusers_mdiffae.conversion.layouts import CheckpointError

PARITY = Path(__file__).parent / "fixtures" / "parity"
CLASSES = {"maetok": AutoencoderMAETok, "maetok_ape": AutoencoderMAETok, "softvq": AutoencoderSoftVQ}
TOL = 1e-5


def read_fixture(name):
    with safe_open(str(PARITY / f"{name}.safetensors"), framework="pt") as f:
        meta = f.metadata()
        tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (safe_open is not iterable)
    state = {k: v for k, v in tensors.items() if not k.startswith("case.")}
    cases = {k: v for k, v in tensors.items() if k.startswith("case.")}
    return json.loads(meta["config"]), json.loads(meta["vit_overrides"]), state, cases


def write_original_folder(path: Path, config: dict, state: dict) -> Path:
    """A folder as ``PyTorchModelHubMixin.save_pretrained`` writes it."""
    path.mkdir(parents=True, exist_ok=True)
    (path / "config.json").write_text(json.dumps(config, sort_keys=True, indent=2))
    save_file(
        {k: v.contiguous() for k, v in state.items()}, str(path / "model.safetensors"), metadata={"format": "pt"}
    )
    return path


@pytest.fixture(scope="module")
def fixtures():
    return {name: read_fixture(name) for name in CLASSES}


@pytest.fixture(scope="module")
def models(fixtures, tmp_path_factory):
    out = {}
    for name, (config, overrides, state, _) in fixtures.items():
        folder = write_original_folder(tmp_path_factory.mktemp(name), config, state)
        out[name] = CLASSES[name].from_pretrained(folder, vit_overrides=overrides)
    return out


def load_error(tmp_path, name, fixtures, config_edit=None, state_edit=None, cls=None, overrides="fixture"):
    config, fixture_overrides, state, _ = fixtures[name]
    config, state = dict(config), dict(state)
    if config_edit:
        config_edit(config)
    if state_edit:
        state_edit(state)
    folder = write_original_folder(tmp_path / "snap", config, state)
    with pytest.raises((CheckpointError, ValueError)) as err:
        (cls or CLASSES[name]).from_pretrained(
            folder, vit_overrides=fixture_overrides if overrides == "fixture" else overrides
        )
    return str(err.value)


# -- parity ----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(CLASSES))
def test_reproduces_the_original_encode_and_decode(name, fixtures, models, record_property):
    _, _, _, cases = fixtures[name]
    model = models[name]
    assert isinstance(model, CLASSES[name]) and not model.training and model.dtype == torch.float32
    with torch.no_grad():
        out = model.encode(cases["case.encode.images"])
        decoded = model.decode(cases["case.decode.latents"]).sample
        roundtrip = model.decode(out.latent_dist.mode()).sample
    got = {
        "case.encode.latents": out.latent,
        "case.decode.images": decoded,
        "case.roundtrip.images": roundtrip,
    }
    if name == "softvq":
        got["case.encode.pre_quant"] = out.pre_quant
    else:
        assert out.pre_quant is None
    diffs = {}
    for key, value in got.items():
        assert value.shape == cases[key].shape, key
        diffs[key] = (value - cases[key]).abs().max().item()
    record_property("max_abs_diff", diffs)
    print(f"{name}: " + ", ".join(f"{k} {v:.3e}" for k, v in diffs.items()))
    assert max(diffs.values()) <= TOL, diffs


def test_encode_returns_tokens_as_a_point_distribution(models, fixtures):
    model, cases = models["softvq"], fixtures["softvq"][3]
    images = cases["case.encode.images"]
    with torch.no_grad():
        out = model.encode(images)
        (dist,) = model.encode(images, return_dict=False)
    assert isinstance(out, LatentTokenEncoderOutput)
    assert out.latent.shape == (2, 8, 8)
    assert torch.equal(out.latent_dist.sample(generator=torch.Generator().manual_seed(0)), out.latent)
    assert torch.equal(dist.mode(), out.latent) and torch.equal(out.latent_dist.mean, out.latent)
    assert not out.latent_dist.std.any() and not out.latent_dist.kl().any()
    assert (out.latent.norm(dim=-1) <= 1 + 1e-5).all()  # convex mix of unit codes


def test_decode_return_dict_false_and_forward(models, fixtures):
    model, cases = models["maetok"], fixtures["maetok"][3]
    with torch.no_grad():
        (image,) = model.decode(cases["case.decode.latents"], return_dict=False)
        assert torch.equal(image, model.decode(cases["case.decode.latents"]).sample)
        assert torch.equal(model(cases["case.encode.images"]).sample, cases["case.roundtrip.images"])
        (recon,) = model(cases["case.encode.images"], sample_posterior=True, return_dict=False)
    assert recon.shape == (2, 3, 32, 32)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float64])
def test_token_distribution_kl_is_zero_per_sample_in_the_tokens_dtype(dtype):
    from diffusers_mdiffae.models.autoencoders.autoencoder_maetok import TokenLatentDistribution

    kl = TokenLatentDistribution(torch.ones(3, 8, 4, dtype=dtype)).kl()
    assert kl.shape == (3,) and kl.dtype == dtype and not kl.any()


def test_slicing_gives_the_same_results(models, fixtures):
    model, cases = models["maetok"], fixtures["maetok"][3]
    model.enable_slicing()
    try:
        with torch.no_grad():
            z = model.encode(cases["case.encode.images"]).latent
            image = model.decode(cases["case.decode.latents"]).sample
    finally:
        model.disable_slicing()
    assert (z - cases["case.encode.latents"]).abs().max() <= TOL
    assert (image - cases["case.decode.images"]).abs().max() <= TOL


def test_unused_original_tensors_are_dropped(models):
    keys = set(models["maetok"].state_dict())
    assert "encoder.rope.freqs" in keys and "decoder.rope.freqs" in keys
    assert not any("mask_token" in k and k.startswith("encoder") for k in keys)
    assert not any(k.startswith("decoder.patch_embed") or "freqs_t_" in k for k in keys)
    assert "decoder.pos_embed" not in keys and "decoder.pos_embed" in models["maetok_ape"].state_dict()


def test_published_codebook_usage_buffer_and_repa_layer_indices_are_accepted(tmp_path, fixtures):
    config, overrides, state, cases = fixtures["softvq"]
    config = {**config, "codebook_show_usage": True, "repa_layer_indices": [8]}
    state = {**state, "quantize.codebook_used": torch.zeros(2, 65536)}
    model = AutoencoderSoftVQ.from_pretrained(
        write_original_folder(tmp_path / "snap", config, state), vit_overrides=overrides
    )
    assert "quantize.codebook_used" not in model.state_dict()
    with torch.no_grad():
        assert torch.equal(model.encode(cases["case.encode.images"]).latent, cases["case.encode.latents"])


# -- saving and loading our own folders -------------------------------------------------------


@pytest.mark.parametrize("name", ["maetok", "softvq"])
def test_save_and_load_round_trip_is_bit_identical(name, models, fixtures, tmp_path):
    model, cases = models[name], fixtures[name][3]
    model.save_pretrained(tmp_path)
    assert json.loads((tmp_path / "config.json").read_text())["_class_name"] == type(model).__name__
    loaded = type(model).from_pretrained(tmp_path)
    a, b = model.state_dict(), loaded.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert public_config(loaded.config) == public_config(model.config)
    with torch.no_grad():
        assert torch.equal(loaded(cases["case.encode.images"]).sample, model(cases["case.encode.images"]).sample)


def test_own_folder_with_unknown_config_key_or_nan_weight_is_refused(models, tmp_path):
    models["maetok_ape"].save_pretrained(tmp_path)
    config_path = tmp_path / "config.json"
    config = json.loads(config_path.read_text())
    config_path.write_text(json.dumps({**config, "rope_mixed": True}))
    with pytest.raises(ValueError, match=r"unknown key\(s\) \['rope_mixed'\]"):
        AutoencoderMAETok.from_pretrained(tmp_path)
    config_path.write_text(json.dumps(config))
    weights = tmp_path / "diffusion_pytorch_model.safetensors"
    state = load_file(str(weights))
    state["quant_conv.bias"][0] = float("nan")
    save_file(state, str(weights))
    with pytest.raises(ValueError, match="quant_conv.bias"):
        AutoencoderMAETok.from_pretrained(tmp_path)
    with pytest.raises(ValueError, match="holds a AutoencoderMAETok config, not a AutoencoderSoftVQ"):
        AutoencoderSoftVQ.from_pretrained(tmp_path)


def test_torch_dtype_on_an_original_folder(fixtures, tmp_path):
    config, overrides, state, cases = fixtures["maetok"]
    folder = write_original_folder(tmp_path / "snap", config, state)
    model = AutoencoderMAETok.from_pretrained(folder, vit_overrides=overrides, torch_dtype=torch.bfloat16)
    assert model.dtype == torch.bfloat16
    with torch.no_grad():
        z = model.encode(cases["case.encode.images"]).latent
    assert z.dtype == torch.bfloat16 and (z.float() - cases["case.encode.latents"]).abs().max() < 0.1


# -- strict loading of original folders: every problem named ---------------------------------


def test_missing_tensor_is_named(tmp_path, fixtures):
    msg = load_error(tmp_path, "maetok", fixtures, state_edit=lambda s: s.pop("decoder.model.blocks.1.ls2.gamma"))
    assert "missing from the checkpoint" in msg and "decoder.blocks.1.ls2.gamma  [48]" in msg


def test_mismatched_and_unexpected_tensors_are_named(tmp_path, fixtures):
    def edit(s):
        s["quant_conv.weight"] = torch.zeros(9, 32)
        s["encoder.model.head.weight"] = torch.zeros(3)

    msg = load_error(tmp_path, "maetok_ape", fixtures, state_edit=edit)
    assert "quant_conv.weight  [9, 32] vs [8, 32]" in msg
    assert "match no model tensor" in msg and "encoder.model.head.weight  [3]" in msg


def test_unused_tensor_with_wrong_shape_or_missing_is_named(tmp_path, fixtures):
    msg = load_error(
        tmp_path, "maetok", fixtures, state_edit=lambda s: s.update({"encoder.mask_token": torch.zeros(1, 1, 5)})
    )
    assert "encoder.mask_token  [1, 1, 5] vs [1, 1, 32]" in msg
    msg = load_error(tmp_path, "maetok", fixtures, state_edit=lambda s: s.pop("decoder.model.patch_embed.proj.bias"))
    assert "decoder.model.patch_embed.proj.bias  [48]" in msg


def test_rope_grid_buffer_with_other_coordinates_is_refused(tmp_path, fixtures):
    msg = load_error(
        tmp_path, "maetok", fixtures, state_edit=lambda s: s.update({"encoder.freqs_t_x": torch.arange(16.0)})
    )
    assert "encoder.freqs_t_x does not hold the 4x4 grid coordinates" in msg


def test_rope_buffers_of_another_base_size_are_stale_and_the_actual_grid_is_used(tmp_path, fixtures):
    # A 512 model fine-tuned from 256 stores the 256 grid; the original then recomputes the grid it
    # sees at run time. Here: base 16 px (2x2 grid of 8 px patches) for a 32 px model.
    config, overrides, state, cases = fixtures["maetok"]
    grid = {"x": torch.tensor([0.0, 1.0, 0.0, 1.0]), "y": torch.tensor([0.0, 0.0, 1.0, 1.0])}
    state = {**state, **{f"{side}.freqs_t_{a}": grid[a].clone() for side in ("encoder", "decoder") for a in "xy"}}
    folder = write_original_folder(tmp_path / "snap", {**config, "base_image_size": 16}, state)
    model = AutoencoderMAETok.from_pretrained(folder, vit_overrides=overrides)
    with torch.no_grad():
        assert torch.equal(model.encode(cases["case.encode.images"]).latent, cases["case.encode.latents"])


def test_nonfinite_tensor_is_named(tmp_path, fixtures):
    def edit(s):
        s["decoder.model.norm.weight"] = s["decoder.model.norm.weight"].clone()
        s["decoder.model.norm.weight"][3] = float("inf")

    msg = load_error(tmp_path, "softvq", fixtures, state_edit=edit)
    assert "NaN or infinite" in msg and "decoder.model.norm.weight" in msg


def test_softvq_checkpoint_loaded_as_maetok_says_which_class(tmp_path, fixtures):
    msg = load_error(tmp_path, "softvq", fixtures, cls=AutoencoderMAETok)
    assert "quantize.embedding  [2, 16, 8]" in msg and "load it with AutoencoderSoftVQ" in msg


def test_recipe_sizes_without_overrides_are_reported_tensor_by_tensor(tmp_path, fixtures):
    msg = load_error(tmp_path, "maetok_ape", fixtures, overrides=None)
    assert "encoder.model.blocks.0.attn.qkv.weight  [96, 32] vs [1152, 384]" in msg
    assert "encoder.blocks.11.ls2.gamma  [384]" in msg  # the recipe's 12 blocks, missing


@pytest.mark.parametrize(
    "edit, needle",
    [
        ({"use_latent_noise": True}, "not continuous_tokenizer ModelArgs fields: ['use_latent_noise']"),
        ({"rope_mixed": False}, "axial RoPE"),
        ({"enc_type": "cnn"}, "enc_type is 'cnn'"),
        ({"decoder_model": "vit_giant_patch14_dinov2.lvd142m"}, "decoder_model 'vit_giant_patch14_dinov2.lvd142m'"),
        ({"dec_tuning_method": "lora"}, "LoRA"),
        ({"to_pixel": "siren"}, "to_pixel 'siren'"),
        ({"dec_cls_token": False}, "dec_cls_token"),
        ({"repa": True}, "repa true"),
    ],
)
def test_original_config_it_cannot_build_is_refused(tmp_path, fixtures, edit, needle):
    msg = load_error(tmp_path, "maetok", fixtures, config_edit=lambda c: c.update(edit))
    assert needle in msg


def test_every_unbuildable_original_setting_is_listed_in_one_refusal(fixtures):
    from diffusers_mdiffae.conversion.tokenizer_layouts import original_tokenizer_config_to_ours

    config, overrides = dict(fixtures["maetok"][0]), fixtures["maetok"][1]
    frozen = {**config, "enc_tuning_method": "frozen", "dec_tuning_method": "frozen"}
    assert original_tokenizer_config_to_ours(frozen, "maetok", overrides)[0] == "AutoencoderMAETok"
    bad = {
        **config,
        **{"enc_type": "cnn", "dec_type": "vae", "enc_tuning_method": "lora", "dec_tuning_method": "lokr"},
        **{"to_pixel": "siren", "use_rope": False, "use_ape": False, "dec_cls_token": False, "repa": True},
    }
    with pytest.raises(CheckpointError) as err:
        original_tokenizer_config_to_ours(bad, "maetok", overrides)
    assert str(err.value) == (
        "config.json describes a tokenizer this package cannot build:\n"
        "  enc_type is 'cnn': only 'vit' tokenizers are supported\n"
        "  enc_tuning_method 'lora': LoRA-wrapped weights are not supported\n"
        "  dec_type is 'vae': only 'vit' tokenizers are supported\n"
        "  dec_tuning_method 'lokr': LoRA-wrapped weights are not supported\n"
        "  to_pixel 'siren': only the 'linear' pixel head is supported\n"
        "  use_ape false without use_rope is not supported (the original then takes its axial-RoPE path, which fails)\n"
        "  dec_cls_token false is not supported (no published model uses it)\n"
        "  repa true is not supported (REPA weights belong to training)"
    )
    with pytest.raises(CheckpointError) as err:
        original_tokenizer_config_to_ours({**config, "use_rope": True, "rope_mixed": False}, "maetok", overrides)
    assert str(err.value) == (
        "config.json describes a tokenizer this package cannot build:\n"
        "  use_rope without rope_mixed (axial RoPE) is not supported: it fails in the original code too"
    )


def test_vit_overrides_only_for_original_folders(models, tmp_path):
    models["maetok"].save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="vit_overrides applies only to original"):
        AutoencoderMAETok.from_pretrained(tmp_path, vit_overrides={})


# -- input checks -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "images, needle",
    [
        (torch.zeros(3, 32, 32), "rank 4"),
        (torch.zeros(1, 4, 32, 32), "3 channels"),
        (torch.zeros(1, 3, 32, 32, dtype=torch.uint8), "floating-point"),
        (torch.full((1, 3, 32, 32), float("nan")), "NaN"),
        (
            torch.zeros(1, 3, 48, 40),
            "image is 48x40 but this model takes 32x32; resize it first (e.g. VaeImageProcessor",
        ),
    ],
)
def test_bad_images_are_refused_with_a_sentence(models, images, needle):
    with pytest.raises(ValueError) as err:
        models["maetok"].encode(images)
    assert needle in str(err.value)
    if "resize" in needle:
        assert "torch.nn.functional.interpolate" in str(err.value)


@pytest.mark.parametrize(
    "latents, needle",
    [
        (torch.zeros(1, 8, 8, 1), "rank 3"),
        (torch.zeros(8, 8), "add a batch dimension"),
        (torch.zeros(1, 7, 8), "8 tokens"),
        (torch.zeros(1, 8, 4), "width 8"),
        (torch.zeros(1, 8, 8, dtype=torch.int64), "floating-point"),
        (torch.full((1, 8, 8), float("inf")), "NaN or infinite"),
    ],
)
def test_bad_latents_are_refused_with_a_sentence(models, latents, needle):
    with pytest.raises(ValueError, match=None) as err:
        models["softvq"].decode(latents)
    assert needle in str(err.value)


def test_tiling_is_refused(models):
    with pytest.raises(NotImplementedError, match="1-D tokens"):
        models["maetok"].enable_tiling()
    assert models["maetok"].use_tiling is False


@pytest.mark.parametrize("kind, cls", [("maetok", "AutoencoderMAETok"), ("softvq", "AutoencoderSoftVQ")])
def test_tiling_refusal_names_the_class_the_token_count_and_the_alternative(kind, cls):
    from fixtures.models import make_tiny_tokenizer

    with pytest.raises(NotImplementedError) as err:
        make_tiny_tokenizer(kind).enable_tiling(tile_sample_min_size=64)
    assert str(err.value) == (
        f"{cls} cannot tile: its latents are 8 1-D tokens that each describe the whole image, so there are no "
        "spatial tiles to encode or decode separately; use enable_slicing() to save memory on large batches, "
        "or a smaller batch"
    )


def test_denormalize_latents_undoes_the_token_normalisation():
    from fixtures.models import make_tiny_tokenizer

    model = make_tiny_tokenizer("softvq")  # vq_mean -0.00077168207, vq_std 0.07157949
    mean, std = model.config.vq_mean, model.config.vq_std
    assert (mean, std) == (-0.00077168207, 0.07157949)
    z = torch.tensor([[[0.0, 1.0, -2.0]]], dtype=torch.float64)
    want = torch.tensor([[[mean, std + mean, -2 * std + mean]]], dtype=torch.float64)
    assert torch.allclose(model.denormalize_latents(z), want, rtol=0, atol=1e-12)
    assert torch.allclose(model.denormalize_latents(model.normalize_latents(z)), z, rtol=0, atol=1e-12)


# -- construction -----------------------------------------------------------------------------

TINY = {
    "image_size": 32,
    "enc_patch_size": 8,
    "dec_patch_size": 8,
    "num_latent_tokens": 4,
    "codebook_embed_dim": 4,
    "encoder_embed_dim": 16,
    "encoder_depth": 1,
    "encoder_num_heads": 2,
    "decoder_embed_dim": 16,
    "decoder_depth": 1,
    "decoder_num_heads": 2,
}


@pytest.mark.parametrize(
    "cls, args, needle",
    [
        (AutoencoderMAETok, {"image_size": 36}, "not a multiple of enc_patch_size"),
        (AutoencoderMAETok, {"encoder_num_heads": 3}, "not divisible by encoder_num_heads"),
        (AutoencoderMAETok, {"decoder_num_heads": 8}, "head width divisible by 4"),
        (AutoencoderMAETok, {"vq_std": 0.0}, "vq_std must be positive"),
        (AutoencoderSoftVQ, {"num_codebooks": 3}, "divisible by num_codebooks"),
        (AutoencoderSoftVQ, {"num_latent_tokens": 4.0}, "num_latent_tokens must be an int"),
    ],
)
def test_bad_constructor_arguments_are_refused(cls, args, needle):
    with pytest.raises(ValueError, match=needle):
        cls(**{**TINY, **args})


def test_fresh_model_runs_and_supports_gradient_checkpointing():
    torch.manual_seed(0)
    model = AutoencoderMAETok(**TINY)
    for name, p in model.named_parameters():
        if name.endswith(".gamma"):  # LayerScale at 1 (its 1e-5 init would hide what the blocks do)
            p.data.fill_(1.0)
    x = torch.rand(2, 3, 32, 32) * 2 - 1

    def grads():
        model.zero_grad()
        model(x).sample.square().mean().backward()
        return {n: p.grad.clone() for n, p in model.named_parameters()}

    plain = grads()
    model.enable_gradient_checkpointing()
    checkpointed = grads()
    assert plain.keys() == checkpointed.keys()
    assert all(torch.allclose(plain[k], checkpointed[k], rtol=1e-4, atol=1e-7) for k in plain)
    assert model.encode(x).latent.shape == (2, 4, 4)


def test_pipelines_get_the_original_normalisation_as_scaling_and_shift(tmp_path):
    from diffusers_mdiffae import AutoencoderSoftVQ

    small = {"encoder_embed_dim": 32, "encoder_depth": 1, "encoder_num_heads": 2}
    small.update(decoder_embed_dim=32, decoder_depth=1, decoder_num_heads=2)
    model = AutoencoderSoftVQ(**small)  # the published softvq-bl-64 statistics by default
    assert model.config.scaling_factor == pytest.approx(1 / 0.07157949)
    assert model.config.shift_factor == pytest.approx(-0.00077168207)
    z = torch.randn(2, 64, 32)
    pipeline_side = (z - model.config.shift_factor) * model.config.scaling_factor
    assert torch.allclose(pipeline_side, model.normalize_latents(z), atol=1e-5)
    model.save_pretrained(tmp_path)
    again = AutoencoderSoftVQ.from_pretrained(tmp_path)
    assert (again.config.scaling_factor, again.config.shift_factor) == (
        model.config.scaling_factor,
        model.config.shift_factor,
    )
    assert AutoencoderSoftVQ(**small, scaling_factor=2.0).config.scaling_factor == 2.0
