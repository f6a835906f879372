"""Single .safetensors files (no config.json): family and configuration inferred from tensor names and shapes."""

import json

import pytest
import torch
from fixtures import fake_original
from fixtures.models import FAMILIES, images, make_tiny
from safetensors.torch import save_file

from diffusers_mdiffae import AutoencoderMDiffAE, AutoencoderSemDisDiffAE
from diffusers_mdiffae.conversion.layouts import CheckpointError
from diffusers_mdiffae.conversion.single_file import (
    METADATA_KEY,
    describe,
    infer_config,
    load_single_file,
    read_header,
    save_single_file,
)

ALL = sorted(FAMILIES)


def save_plain(model, path, metadata=None):
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path), metadata=metadata)
    return path


def same_weights(a, b) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def architecture(config: dict) -> dict:
    """The config keys the tensors determine (the rest are defaults either way)."""
    skip = {"block_out_channels", "sample_size", "_use_default_values"}
    return {
        k: (list(v) if isinstance(v, tuple) else v)
        for k, v in config.items()
        if k not in skip and not k.startswith("_")
    }


@pytest.mark.parametrize("family", ALL)
def test_every_family_is_inferred_from_its_tensors_and_loads_identically(tmp_path, family):
    model = make_tiny(seed=3, family=family)
    path = save_plain(model, tmp_path / f"{family}.safetensors")
    cls_name, config = describe(path)
    assert cls_name == type(model).__name__
    expected = architecture(dict(model.config))
    assert {k: config.get(k, expected[k]) for k in expected} == expected
    loaded = load_single_file(path)
    assert type(loaded) is type(model) and same_weights(loaded, model)
    x = images(1, 32, 48)
    with torch.no_grad():
        a = model.decode(model.encode(x).latent, num_inference_steps=2, pdg_strength=1.3).sample
        b = loaded.decode(loaded.encode(x).latent, num_inference_steps=2, pdg_strength=1.3).sample
    assert torch.allclose(a, b, atol=1e-5)  # same weights; memory layouts may differ in summation order


@pytest.mark.parametrize(
    "overrides, family",
    [
        (
            {
                "model_dim": 48,
                "mlp_ratio": 3.0,
                "depthwise_kernel_size": 5,
                "adaln_low_rank_rank": 4,
                "encoder_depth": 2,
            },
            "mdiffae_v1",
        ),
        (
            {"decoder_depth": 6, "decoder_start_blocks": 2, "decoder_end_blocks": 1, "latent_channels": 16},
            "mdiffae_v2",
        ),
        ({"patch_size": 8, "block_out_channels": (32, 32, 32, 32)}, "irdiffae_v1"),
        ({"bottleneck_posterior_kind": "deterministic", "mlp_ratio": 1.5, "decoder_depth": 5}, "semdisdiffae"),
    ],
)
def test_other_hyper_parameters_are_read_from_the_shapes(tmp_path, overrides, family):
    model = make_tiny(family=family, **overrides)
    path = save_plain(model, tmp_path / "m.safetensors")
    config = describe(path)[1]
    for key, value in architecture(overrides).items():
        assert config[key] == value, key
    assert same_weights(load_single_file(path), model)


def test_header_only_no_tensor_data_is_read(tmp_path):
    path = save_plain(make_tiny(), tmp_path / "m.safetensors")
    shapes, metadata = read_header(path)
    assert shapes["decoder.patchify.proj.weight"] == (32, 3, 16, 16) and metadata == {}
    # a file whose data section is cut off still describes (the header is all describe reads) ...
    data = path.read_bytes()
    n = int.from_bytes(data[:8], "little")
    truncated = tmp_path / "cut.safetensors"
    truncated.write_bytes(data[: 8 + n])
    with pytest.raises(CheckpointError, match="truncated"):  # ... but the header check names the cut
        describe(truncated)


def test_published_spellings_are_accepted(tmp_path):
    """The DiCo aliases and reshaped tensors a published snapshot may hold (fixtures.fake_original)."""
    model = make_tiny(seed=5)
    path = tmp_path / "orig.safetensors"
    save_file(fake_original.to_original_layout(model.state_dict()), str(path))
    assert describe(path)[1]["patch_size"] == 16
    assert same_weights(load_single_file(path), model)


@pytest.mark.parametrize("family", ALL)
def test_metadata_config_is_preferred_and_keeps_what_tensors_cannot_show(tmp_path, family):
    extra = {"logsnr_min": -9.0, "decoder_num_inference_steps": 3, "decoder_seed": 7}
    if family == "semdisdiffae":
        extra.update(bottleneck_norm_mode="channel_wise", latent_running_stats_eps=1e-5)  # invisible in tensors
    model = make_tiny(family=family, **extra)
    path = tmp_path / "m.safetensors"
    save_single_file(model, path)
    loaded = load_single_file(path)
    assert same_weights(loaded, model)
    for key, value in extra.items():
        assert loaded.config[key] == value


def test_the_semdis_posterior_kind_is_read_from_the_bottleneck_width():
    model = make_tiny(family="semdisdiffae")
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    latent = model.config.latent_channels
    rest = shapes["encoder.to_bottleneck.weight"][1:]
    assert infer_config(shapes)[1]["bottleneck_posterior_kind"] == "diagonal_gaussian"
    shapes["encoder.to_bottleneck.weight"] = (latent, *rest)
    assert infer_config(shapes)[1]["bottleneck_posterior_kind"] == "deterministic"
    shapes["encoder.to_bottleneck.weight"] = (3 * latent, *rest)
    with pytest.raises(CheckpointError) as e:
        infer_config(shapes, "m.safetensors")
    assert str(e.value) == (
        f"m.safetensors: encoder.to_bottleneck.weight has {3 * latent} output channels; a SemDisDiffAE encoder has "
        f"{2 * latent} (mean and log-SNR of {latent} latent channels) or {latent} (deterministic)"
    )


def test_inferred_sizes_follow_the_patch():
    config = infer_config({k: tuple(v.shape) for k, v in make_tiny().state_dict().items()})[1]
    assert config["patch_size"] == 16 and config["block_out_channels"] == [32] * 5 and config["sample_size"] == 512


def test_saved_metadata_holds_the_public_config_and_the_class_name_only(tmp_path):
    from safetensors import safe_open

    model = make_tiny(family="semdisdiffae")
    assert "_use_default_values" in dict(model.config)  # a private key the file must not carry
    save_single_file(model, tmp_path / "m.safetensors")
    with safe_open(str(tmp_path / "m.safetensors"), framework="pt") as f:
        config = json.loads(f.metadata()[METADATA_KEY])
    public = {k: list(v) if isinstance(v, tuple) else v for k, v in model.config.items() if not k.startswith("_")}
    assert config == {**public, "_class_name": "AutoencoderSemDisDiffAE"}


def test_saved_without_config_the_file_has_no_metadata(tmp_path):
    from safetensors import safe_open

    model = make_tiny()
    save_single_file(model, tmp_path / "m.safetensors", with_config=False)
    with safe_open(str(tmp_path / "m.safetensors"), framework="pt") as f:
        assert f.metadata() is None
    assert same_weights(load_single_file(tmp_path / "m.safetensors"), model)


def test_published_config_in_metadata_is_read(tmp_path):
    from test_convert import ORIGINAL

    model = make_tiny(seed=2, family="irdiffae_v1")
    path = save_plain(model, tmp_path / "m.safetensors", {METADATA_KEY: json.dumps(ORIGINAL["irdiffae_v1"][0])})
    loaded = load_single_file(path)
    assert loaded.config.pdg_mode == "path_drop" and same_weights(loaded, model)


@pytest.mark.parametrize(
    "text, match",
    [
        ("{not json", "config in its metadata is not valid JSON"),
        ("[1, 2]", "not a JSON object"),
        (json.dumps({"_class_name": "AutoencoderKL"}), "describes AutoencoderKL, not one of"),
        (json.dumps({"_class_name": "AutoencoderMDiffAE", "model_dimm": 32}), "unknown key"),
        (json.dumps({"_class_name": "AutoencoderMDiffAE", "model_dim": 64}), "does not match"),
    ],
)
def test_a_bad_metadata_config_is_refused_with_a_sentence(tmp_path, text, match):
    path = save_plain(make_tiny(), tmp_path / "m.safetensors", {METADATA_KEY: text})
    with pytest.raises(CheckpointError, match=match):
        load_single_file(path)


def test_an_sd_vae_is_refused_naming_what_is_missing(tmp_path):
    path = tmp_path / "vae.safetensors"
    save_file(
        {"decoder.conv_in.weight": torch.zeros(4, 4, 3, 3), "encoder.conv_in.weight": torch.zeros(4, 3, 3, 3)},
        str(path),
    )
    with pytest.raises(CheckpointError) as e:
        load_single_file(path)
    assert str(e.value) == (
        "vae.safetensors is not an mDiffAE-family checkpoint: it has no decoder.patchify.proj.weight "
        "(an SD/FLUX VAE has decoder.conv_in.weight: load it with the stock Load VAE node)"
    )


@pytest.mark.parametrize(
    "name, hint",
    [
        (
            "first_stage_model.decoder.conv_in.weight",
            " (an SD/FLUX VAE has decoder.conv_in.weight: load it with the stock Load VAE node)",
        ),
        ("model.diffusion_model.input_blocks.0.0.weight", " (it holds a diffusion model, not an autoencoder)"),
        ("diffusion_model.input_blocks.0.0.weight", " (it holds a diffusion model, not an autoencoder)"),
        ("lora_unet_down_blocks_0.lora_up.weight", " (it holds LoRA weights)"),
        ("unet.to_q.LoRA_A.weight", " (it holds LoRA weights)"),
        ("encoder.blocks.0.weight", ""),
    ],
)
def test_a_foreign_file_is_refused_saying_what_it_probably_is(tmp_path, name, hint):
    path = tmp_path / "other.safetensors"
    save_file({name: torch.zeros(2, 2), "extra.bias": torch.zeros(2)}, str(path))
    with pytest.raises(CheckpointError) as e:
        load_single_file(path)
    assert str(e.value) == (
        f"other.safetensors is not an mDiffAE-family checkpoint: it has no decoder.patchify.proj.weight{hint}"
    )


@pytest.mark.parametrize(
    "edit, match",
    [
        (
            lambda sd: {k: v for k, v in sd.items() if k != "decoder.latent_up.weight"},
            "has no decoder.latent_up.weight",
        ),
        (lambda sd: {k: v for k, v in sd.items() if ".cca." not in k}, "neither FCDM blocks"),
        (lambda sd: {k: v for k, v in sd.items() if "mask_feature" not in k}, "no guidance feature in its decoder"),
        (lambda sd: {k: v for k, v in sd.items() if not k.startswith("encoder.blocks.")}, "no encoder blocks"),
        (lambda sd: {k: v for k, v in sd.items() if not k.startswith("decoder.blocks.1.")}, "does not match"),
        (
            lambda sd: {**sd, "decoder.extra.weight": torch.zeros(2)},
            r"match no model tensor:\n    decoder.extra.weight",
        ),
    ],
)
def test_broken_files_are_refused_with_a_sentence(tmp_path, edit, match):
    sd = {k: v.contiguous() for k, v in make_tiny().state_dict().items()}
    path = tmp_path / "broken.safetensors"
    save_file(edit(sd), str(path))
    with pytest.raises(CheckpointError, match=match):
        load_single_file(path)


def test_infer_config_works_on_plain_shapes():
    shapes = {
        k: tuple(v.shape)
        for k, v in AutoencoderSemDisDiffAE(
            model_dim=16,
            encoder_depth=1,
            decoder_depth=3,
            decoder_start_blocks=1,
            decoder_end_blocks=1,
            adaln_low_rank_rank=4,
            mlp_ratio=2.0,
        )
        .state_dict()
        .items()
    }
    cls_name, config = infer_config(shapes)
    assert cls_name == "AutoencoderSemDisDiffAE" and config["decoder_depth"] == 3 and config["latent_channels"] == 128
    assert (
        AutoencoderMDiffAE.__name__
        == infer_config({k: tuple(v.shape) for k, v in make_tiny().state_dict().items()})[0]
    )
