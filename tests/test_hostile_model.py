"""Hostile use of the Python API: threads, bad values, bad weights and configs get a sentence, never garbage."""

import json
import threading

import pytest
import torch
from fixtures.models import make_tiny
from safetensors.torch import load_file, save_file

from diffusers_mdiffae import AutoencoderMDiffAE, AutoencoderSemDisDiffAE, MDiffAEInferenceConfig


@pytest.mark.parametrize("family", ["mdiffae_v1", "semdisdiffae"])
def test_concurrent_multi_step_decodes_on_one_model_equal_sequential_ones(family):
    model = make_tiny(family=family)
    z = torch.randn(2, model.config.latent_channels, 2, 3)
    settings = [
        {"num_inference_steps": n, "pdg_strength": w, "seed": s, "sampler": smp}
        for n, w, s, smp in (
            (4, 1.2, 0, "ddim"),
            (3, 1.0, 1, "dpmpp_2m"),
            (5, 2.0, 2, "ddim"),
            (2, 1.5, 3, "dpmpp_2m"),
        )
    ]
    with torch.no_grad():
        expected = [model.decode(z, **kw).sample for kw in settings]
    results, errors = {}, []

    def work(i):
        try:
            with torch.no_grad():
                for _ in range(3):
                    results[i] = model.decode(z, **settings[i % len(settings)]).sample
        except Exception as e:  # pragma: no cover - reported below
            errors.append(repr(e))

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    for i, out in results.items():
        assert torch.equal(out, expected[i % len(settings)]), i


@pytest.mark.parametrize("seed", [1.7, "3", True, -1, 2**64])
def test_a_seed_that_is_not_a_valid_int_is_refused(tiny, seed):
    z = torch.randn(1, 64, 2, 2)
    with pytest.raises(ValueError, match="seed must be"):
        tiny.decode(z, seed=seed)
    with pytest.raises(ValueError, match="seed must be"):
        tiny.decode(z, inference_config=MDiffAEInferenceConfig(seed=seed))


@pytest.mark.parametrize(
    "kw, match",
    [
        ({"num_inference_steps": 0}, "positive int"),
        ({"num_inference_steps": 2.5}, "positive int"),
        ({"num_inference_steps": True}, "positive int"),
        ({"pdg_strength": float("nan")}, "finite"),
        ({"pdg_strength": "2"}, "must be a number"),
        ({"sampler": "euler"}, "sampler must be one of"),
        ({"strength": 0}, r"strength must be a number in \(0, 1\]"),
        ({"schedule": None, "sampler": None}, None),
    ],
)
def test_bad_decode_settings_get_a_sentence(tiny, kw, match):
    z = torch.randn(1, 64, 2, 2)
    if match is None:
        tiny.decode(z, **kw)
        return
    with pytest.raises(ValueError, match=match):
        tiny.decode(z, **kw)


def test_int32_and_nan_latents_are_refused(tiny):
    with pytest.raises(ValueError, match="floating-point"):
        tiny.decode(torch.zeros(1, 64, 2, 2, dtype=torch.int32))
    with pytest.raises(ValueError, match="NaN or infinite"):
        tiny.decode(torch.full((1, 64, 2, 2), float("nan")))


@pytest.mark.parametrize(
    "family, cls", [("mdiffae_v1", AutoencoderMDiffAE), ("semdisdiffae", AutoencoderSemDisDiffAE)]
)
def test_nan_weights_are_refused_by_from_pretrained_with_the_tensor_name(tmp_path, family, cls):
    make_tiny(family=family).save_pretrained(tmp_path)
    path = tmp_path / "diffusion_pytorch_model.safetensors"
    sd = load_file(path)
    sd["decoder.out_proj.bias"] = torch.full_like(sd["decoder.out_proj.bias"], float("nan"))
    save_file(sd, path)
    with pytest.raises(ValueError, match="NaN or infinite values in 1 tensor\\(s\\): decoder.out_proj.bias"):
        cls.from_pretrained(tmp_path)


@pytest.mark.parametrize(
    "change, match",
    [
        ({"patch_sizee": 16}, r"unknown key\(s\) \['patch_sizee'\]"),
        ({"patch_size": "16"}, "patch_size must be an int, got '16'"),
        ({"mlp_ratio": "4"}, "mlp_ratio must be a finite number"),
        ({"outer_norms": 1}, "outer_norms must be a bool"),
        ({"decoder_seed": 1.5}, "decoder_seed must be an int"),
    ],
)
def test_malformed_configs_are_refused_naming_the_key(tmp_path, tiny, change, match):
    tiny.save_pretrained(tmp_path)
    cfg = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**cfg, **change}))
    with pytest.raises(ValueError, match=match):
        AutoencoderMDiffAE.from_pretrained(tmp_path)


def test_constructor_arguments_of_the_wrong_type_are_refused():
    with pytest.raises(ValueError, match="patch_size must be an int"):
        AutoencoderMDiffAE(patch_size="16")
    with pytest.raises(ValueError, match="bottleneck_posterior_kind must be one of"):
        AutoencoderSemDisDiffAE(model_dim=32, bottleneck_posterior_kind="laplace")


def test_a_diffusers_folder_of_another_class_is_refused_by_name(tmp_path):
    make_tiny(family="semdisdiffae").save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="holds a AutoencoderSemDisDiffAE config, not a AutoencoderMDiffAE"):
        AutoencoderMDiffAE.from_pretrained(tmp_path)
