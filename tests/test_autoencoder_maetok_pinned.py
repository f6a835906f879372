"""MAETok / SoftVQ-VAE construction and loading (models/autoencoders/autoencoder_maetok.py), pinned.

Constructor refusals sentence by sentence, and ``from_pretrained`` on the tiny original-layout parity
fixture (written as ``PyTorchModelHubMixin`` would, by ``test_maetok.write_original_folder``).
"""

from __future__ import annotations

import pytest
import torch
from fixtures.errors import error_message
from test_maetok import TINY, read_fixture, write_original_folder

from diffusers_mdiffae import AutoencoderMAETok, AutoencoderSoftVQ

NO_LOADING_ISSUES = {"missing_keys": [], "unexpected_keys": [], "mismatched_keys": [], "error_msgs": []}
SIZES = (
    "image_size",
    "enc_patch_size",
    "dec_patch_size",
    "num_latent_tokens",
    "codebook_embed_dim",
    "encoder_embed_dim",
    "encoder_depth",
    "encoder_num_heads",
    "decoder_embed_dim",
    "decoder_depth",
    "decoder_num_heads",
)


def refusal(cls=AutoencoderMAETok, **args) -> str:
    return error_message(cls, **{**TINY, **args})


@pytest.mark.parametrize("name", SIZES)
@pytest.mark.parametrize("value", [0, -4])
def test_every_size_must_be_a_positive_int(name, value):
    assert refusal(**{name: value}) == f"{name} must be a positive int, got {value}"


def test_the_size_check_refuses_bools_and_non_ints_on_its_own():
    """Constructors type-check first; the helper still refuses what that check would have caught."""
    from diffusers_mdiffae.models.autoencoders.autoencoder_maetok import _positive_int

    assert error_message(_positive_int, "codebook_size", True) == "codebook_size must be a positive int, got True"
    assert error_message(_positive_int, "num_codebooks", 2.0) == "num_codebooks must be a positive int, got 2.0"
    _positive_int("num_codebooks", 2)


@pytest.mark.parametrize(
    "cls, args, message",
    [
        (AutoencoderMAETok, {"image_size": True}, "image_size must be an int, got True (bool)"),
        (AutoencoderSoftVQ, {"codebook_size": 2.0}, "codebook_size must be an int, got 2.0 (float)"),
    ],
)
def test_a_mistyped_argument_is_refused_naming_the_class_it_was_given_to(cls, args, message):
    assert refusal(cls, **args) == f"{cls.__name__} argument: {message}"


def test_a_rope_head_width_not_divisible_by_4_is_refused_as_an_int():
    assert refusal(encoder_embed_dim=24, encoder_num_heads=4) == (
        "mixed 2-D RoPE needs the encoder head width divisible by 4, got 6"
    )
    assert refusal(decoder_num_heads=8) == "mixed 2-D RoPE needs the decoder head width divisible by 4, got 2"


def test_mlp_ratio_must_be_positive():
    assert refusal(mlp_ratio=0.0) == "mlp_ratio must be positive, got 0.0"
    assert refusal(AutoencoderSoftVQ, mlp_ratio=-1.5) == "mlp_ratio must be positive, got -1.5"
    AutoencoderMAETok(**{**TINY, "mlp_ratio": 0.5})  # any positive ratio builds


@pytest.fixture(scope="module")
def maetok():
    config, overrides, state, _ = read_fixture("maetok")
    return config, overrides, state


def test_an_original_folder_in_a_subfolder_is_converted(maetok, tmp_path):
    config, overrides, state = maetok
    write_original_folder(tmp_path / "repo" / "tokenizer", config, state)
    model = AutoencoderMAETok.from_pretrained(tmp_path / "repo", subfolder="tokenizer", vit_overrides=overrides)
    direct = AutoencoderMAETok.from_pretrained(tmp_path / "repo" / "tokenizer", vit_overrides=overrides)
    a, b = model.state_dict(), direct.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_loading_info_of_an_original_folder_reports_no_issue_in_diffusers_keys(maetok, tmp_path):
    config, overrides, state = maetok
    folder = write_original_folder(tmp_path / "snap", config, state)
    model, info = AutoencoderMAETok.from_pretrained(folder, vit_overrides=overrides, output_loading_info=True)
    assert isinstance(model, AutoencoderMAETok) and info == NO_LOADING_ISSUES
    model.save_pretrained(tmp_path / "ours")
    again, again_info = AutoencoderMAETok.from_pretrained(tmp_path / "ours", output_loading_info=True)
    assert set(again_info) == set(info) and isinstance(again, AutoencoderMAETok)


def test_vit_overrides_for_a_folder_of_ours_is_refused_naming_it(tmp_path):
    AutoencoderMAETok(**TINY).save_pretrained(tmp_path / "ours")
    with pytest.raises(ValueError) as err:
        AutoencoderMAETok.from_pretrained(tmp_path / "ours", vit_overrides={})
    assert str(err.value) == (
        "vit_overrides applies only to original continuous_tokenizer folders "
        f"(ModelArgs config.json); {tmp_path / 'ours'} is not one"
    )


@pytest.mark.parametrize("cls", [AutoencoderMAETok, AutoencoderSoftVQ])
def test_a_fresh_tokenizer_is_neither_tiled_nor_sliced(cls):
    model = cls(**TINY)
    assert model.use_tiling is False and model.use_slicing is False


def test_save_pretrained_refuses_pickle_and_passes_its_other_options_on(tmp_path):
    from fixtures.models import make_tiny_tokenizer

    maetok = make_tiny_tokenizer("maetok")
    assert error_message(maetok.save_pretrained, tmp_path / "pickled", safe_serialization=False) == (
        "only safetensors are written (pickle checkpoints are unsafe to load)"
    )
    assert not (tmp_path / "pickled").exists()
    maetok.save_pretrained(tmp_path / "fp16", variant="fp16", safe_serialization=True)
    assert sorted(p.name for p in (tmp_path / "fp16").iterdir()) == [
        "config.json",
        "diffusion_pytorch_model.fp16.safetensors",
    ]


@pytest.mark.parametrize("cls", [AutoencoderMAETok, AutoencoderSoftVQ])
def test_given_scaling_and_shift_factors_win_over_the_token_statistics(cls):
    """Unset, they come from vq_std / vq_mean; set, pipelines read what was set."""
    model = cls(**{**TINY, "vq_mean": 0.5, "vq_std": 2.0, "scaling_factor": 0.75, "shift_factor": -0.25})
    assert (model.config.scaling_factor, model.config.shift_factor) == (0.75, -0.25)
    derived = cls(**{**TINY, "vq_mean": 0.5, "vq_std": 2.0})
    assert (derived.config.scaling_factor, derived.config.shift_factor) == (0.5, 0.5)


@pytest.mark.parametrize("kind", ["maetok", "softvq"])
def test_float32_tokens_decode_through_a_bfloat16_model(kind):
    from fixtures.models import make_tiny_tokenizer

    model = make_tiny_tokenizer(kind)
    size = model.config.image_size
    tokens = model.encode(torch.rand(1, 3, size, size) * 2 - 1).latent_dist.mode()
    image = model.to(torch.bfloat16).decode(tokens.float()).sample
    assert image.dtype == torch.bfloat16 and image.shape == (1, 3, size, size)


def test_a_hub_tokenizer_downloads_only_its_config_and_weights_at_the_asked_revision(maetok, tmp_path, monkeypatch):
    """The tokenizers ship no code package: only config.json and the safetensors are fetched."""
    import huggingface_hub

    config, overrides, state = maetok
    snap = write_original_folder(tmp_path / "snap", config, state)
    asked = []

    def config_download(repo, name, subfolder=None, **kw):
        asked.append(("config", kw))
        return str(snap / name)

    def snapshot(repo, allow_patterns, **kw):
        asked.append((allow_patterns, kw))
        return str(snap)

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", config_download)
    monkeypatch.setattr(huggingface_hub, "snapshot_download", snapshot)
    model = AutoencoderMAETok.from_pretrained("org/maetok-b-128", vit_overrides=overrides, revision="v1")
    assert asked == [("config", {"revision": "v1"}), (["config.json", "*.safetensors"], {"revision": "v1"})]
    assert isinstance(model, AutoencoderMAETok)
