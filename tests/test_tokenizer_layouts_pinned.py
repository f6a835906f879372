"""The continuous_tokenizer (MAETok / SoftVQ-VAE) layout, pinned field by field and sentence by sentence.

``conversion.tokenizer_layouts`` is a pure transform of (config, state dict), so most tests call it
directly with hand-written configs and only the tensors that matter; the expected values come from
the original ``ModelArgs`` defaults and layout (tests/fixtures/parity/TOKENIZERS_FACTS.md, section 1).
The ``models.hub`` half (building the model strictly) uses the tiny parity fixtures.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

import pytest
import torch
from fixtures.errors import error_message
from safetensors import safe_open
from safetensors.torch import save_file

from diffusers_mdiffae.conversion.layouts import CheckpointError
from diffusers_mdiffae.conversion.tokenizer_layouts import (
    MODELARGS_DEFAULTS,
    convert_tokenizer,
    is_tokenizer_config,
    original_tokenizer_config_to_ours,
    rope_buffer_grid,
    unused_tensors,
)
from diffusers_mdiffae.models.hub import build_tokenizer, convert_tokenizer_snapshot

PARITY = Path(__file__).parent / "fixtures" / "parity"
SMALL = "vit_small_patch14_dinov2.lvd142m"
BASE = "vit_base_patch14_dinov2.lvd142m"
LARGE = "vit_large_patch14_dinov2.lvd142m"
# What every test config needs to get past the refusals (ModelArgs defaults to CNN encoders).
VIT = {"enc_type": "vit", "dec_type": "vit", "encoder_model": SMALL, "decoder_model": BASE}
ROPE = {**VIT, "use_rope": True, "rope_mixed": True}


def _grid(g: int):
    """The original's ``init_t_xy(g, g)``: float32 column and row of each of the g*g patches."""
    t = torch.arange(g * g, dtype=torch.float32)
    return (t % g).float(), torch.div(t, g, rounding_mode="floor").float()


_refusal = functools.partial(error_message, error=CheckpointError)


@pytest.fixture(scope="module")
def parity():
    """name -> (config, vit_overrides, state dict) of the tiny original-layout fixtures."""
    out = {}
    for name in ("maetok", "maetok_ape", "softvq"):
        with safe_open(str(PARITY / f"{name}.safetensors"), framework="pt") as f:
            meta = f.metadata()
            state = {k: f.get_tensor(k) for k in f.keys() if not k.startswith("case.")}  # noqa: SIM118
        out[name] = (json.loads(meta["config"]), json.loads(meta["vit_overrides"]), state)
    return out


# -- config translation -------------------------------------------------------------------------


def test_original_config_translates_every_field_to_ours():
    # Every translated field set away from its default, so a dropped or swapped field shows.
    config = {
        **VIT,
        "decoder_model": LARGE,
        "image_size": 64,
        "base_image_size": 32,
        "enc_patch_size": 8,
        "dec_patch_size": 16,
        "num_latent_tokens": 12,
        "codebook_embed_dim": 6,
        "rope_theta": 7.5,
        "vq_mean": -0.25,
        "vq_std": 0.5,
        "codebook_size": 32,
        "num_codebooks": 3,
        "tau": 0.07,
        "codebook_l2_norm": False,
        "repa_layer_indices": [8],  # published SoftVQ configs carry it; dropped
    }
    common = {
        "image_size": 64,
        "enc_patch_size": 8,
        "dec_patch_size": 16,
        "num_latent_tokens": 12,
        "codebook_embed_dim": 6,
        "encoder_embed_dim": 384,  # DINOv2-S
        "encoder_depth": 12,
        "encoder_num_heads": 6,
        "decoder_embed_dim": 1024,  # DINOv2-L
        "decoder_depth": 24,
        "decoder_num_heads": 16,
        "mlp_ratio": 4.0,
        "norm_eps": 1e-6,
        "use_rope": False,
        "rope_theta": 7.5,
        "vq_mean": -0.25,
        "vq_std": 0.5,
    }
    name, ours, full = original_tokenizer_config_to_ours(config, "softvq")
    assert name == "AutoencoderSoftVQ"
    assert ours == {**common, "codebook_size": 32, "num_codebooks": 3, "tau": 0.07, "codebook_l2_norm": False}
    # the full config is the ModelArgs one: defaults filled in, the tolerated extra field gone
    expected_full = {**MODELARGS_DEFAULTS, **config}
    del expected_full["repa_layer_indices"]
    assert full == expected_full
    name, ours, _ = original_tokenizer_config_to_ours(config, "maetok")
    assert (name, ours) == ("AutoencoderMAETok", common)  # AEModel has no quantizer settings


def test_absent_fields_take_the_modelargs_defaults():
    # A published config lacks most RoPE / head fields; PyTorchModelHubMixin fills ModelArgs defaults.
    _, ours, full = original_tokenizer_config_to_ours({**VIT, "decoder_model": SMALL}, "softvq")
    assert ours == {
        "image_size": 256,
        "enc_patch_size": 16,
        "dec_patch_size": 16,
        "num_latent_tokens": 256,
        "codebook_embed_dim": 8,
        "encoder_embed_dim": 384,
        "encoder_depth": 12,
        "encoder_num_heads": 6,
        "decoder_embed_dim": 384,
        "decoder_depth": 12,
        "decoder_num_heads": 6,
        "mlp_ratio": 4.0,
        "norm_eps": 1e-6,
        "use_rope": False,
        "rope_theta": 10.0,
        "vq_mean": 0.0,
        "vq_std": 1.0,
        "codebook_size": 16384,
        "num_codebooks": 1,
        "tau": 0.1,
        "codebook_l2_norm": True,
    }
    assert len(full) == 45 and full["base_image_size"] == 256 and full["codebook_show_usage"] is True


def test_vit_overrides_change_only_the_size_fields_of_the_named_recipe():
    overrides = {SMALL: {"depth": 2}, LARGE: {"embed_dim": 8}}  # LARGE is not used: ignored
    _, ours, _ = original_tokenizer_config_to_ours(VIT, "maetok", overrides)
    sizes = {k: v for k, v in ours.items() if k.startswith(("encoder_", "decoder_"))}
    assert sizes == {
        "encoder_embed_dim": 384,
        "encoder_depth": 2,
        "encoder_num_heads": 6,
        "decoder_embed_dim": 768,  # DINOv2-B untouched
        "decoder_depth": 12,
        "decoder_num_heads": 12,
    }


def test_vit_override_of_another_field_is_refused_naming_the_allowed_ones():
    overrides = {SMALL: {"depth": 2, "patch_size": 8, "mlp_ratio": 2}}
    msg = _refusal(original_tokenizer_config_to_ours, VIT, "maetok", overrides)
    assert msg == (
        "vit_overrides['vit_small_patch14_dinov2.lvd142m'] may set only ('embed_dim', 'depth', 'num_heads'), "
        "got ['mlp_ratio', 'patch_size']"
    )


@pytest.mark.parametrize("side", ["encoder", "decoder"])
def test_unknown_vit_recipe_is_refused_naming_the_side_and_the_supported_recipes(side):
    config = {**VIT, f"{side}_model": "vit_giant_patch14_reg4_dinov2.lvd142m"}
    assert _refusal(original_tokenizer_config_to_ours, config, "softvq") == (
        f"{side}_model 'vit_giant_patch14_reg4_dinov2.lvd142m' is not supported; supported ViT recipes: "
        "['vit_base_patch14_dinov2.lvd142m', 'vit_large_patch14_dinov2.lvd142m', 'vit_small_patch14_dinov2.lvd142m'] "
        "(CNN, register-token, giant (SwiGLU), CLIP, SAM, EVA02 and MoVQ variants are not)"
    )


def test_config_that_is_not_an_object_or_an_unknown_kind_is_refused_with_a_sentence():
    assert _refusal(original_tokenizer_config_to_ours, [VIT], "maetok") == "config.json must hold a JSON object"
    assert _refusal(original_tokenizer_config_to_ours, VIT, "vmae", error=ValueError) == (
        "kind must be one of ['maetok', 'softvq'], got 'vmae'"
    )


# -- tensors inference never reads ----------------------------------------------------------------


def test_rope_buffer_grid_is_base_image_size_over_each_sides_patch():
    full = {**MODELARGS_DEFAULTS, "base_image_size": 64, "enc_patch_size": 8, "dec_patch_size": 16}
    assert rope_buffer_grid(full, "encoder") == 8
    assert rope_buffer_grid(full, "decoder") == 4


def test_unused_tensors_have_the_shapes_the_config_implies():
    # Encoder and decoder patches differ so each side's grid is its own; base 32 px differs from the image.
    config = {**ROPE, "image_size": 64, "base_image_size": 32, "enc_patch_size": 8, "dec_patch_size": 16}
    config.update(enc_token_drop=0.4, codebook_show_usage=True, num_codebooks=2)
    _, ours, full = original_tokenizer_config_to_ours(config, "softvq")
    spec = unused_tensors(full, ours, "softvq")
    assert spec == {
        "decoder.model.patch_embed.proj.weight": (768, 3, 16, 16),
        "decoder.model.patch_embed.proj.bias": (768,),
        "encoder.mask_token": (1, 1, 384),
        "quantize.codebook_used": (2, 65536),
        "decoder.model.pos_embed": (1, 1 + (64 // 16) ** 2, 768),  # the image grid, plus the class token
        "encoder.freqs_t_x": (16,),  # (32 / 8)^2: the base grid
        "encoder.freqs_t_y": (16,),
        "decoder.freqs_t_x": (4,),  # (32 / 16)^2
        "decoder.freqs_t_y": (4,),
    }
    assert all(type(d) is int for shape in spec.values() for d in shape)  # they are printed in reports
    # APE, no token drop, no usage buffer, MAETok: only the decoder's patch embedding is left over
    _, ours, full = original_tokenizer_config_to_ours({**VIT, "codebook_show_usage": True}, "maetok")
    assert unused_tensors(full, ours, "maetok") == {
        "decoder.model.patch_embed.proj.weight": (768, 3, 16, 16),
        "decoder.model.patch_embed.proj.bias": (768,),
    }


def _rope_state(enc_grid: int, dec_grid: int) -> dict:
    ex, ey = _grid(enc_grid)
    dx, dy = _grid(dec_grid)
    return {"encoder.freqs_t_x": ex, "encoder.freqs_t_y": ey, "decoder.freqs_t_x": dx, "decoder.freqs_t_y": dy}


def test_rope_grid_buffers_of_each_side_are_checked_against_that_sides_grid():
    # 32 px with 8 px encoder patches (4x4 grid) and 16 px decoder patches (2x2 grid).
    config = {**ROPE, "image_size": 32, "base_image_size": 32, "enc_patch_size": 8, "dec_patch_size": 16}
    state = _rope_state(4, 2)
    assert state["encoder.freqs_t_x"].tolist() == [0, 1, 2, 3] * 4
    assert state["decoder.freqs_t_y"].tolist() == [0, 0, 1, 1]
    conv = convert_tokenizer(config, state, "maetok")
    assert conv.notes == [] and conv.report.mismatched == [] and conv.report.nonfinite == []
    assert conv.state_dict == {}  # all four dropped
    # the decoder's rows given as the encoder's would be: named, with the grid it should hold
    state["decoder.freqs_t_y"] = torch.tensor([0.0, 1.0, 2.0, 3.0])
    conv = convert_tokenizer(config, state, "maetok")
    assert conv.notes == ["decoder.freqs_t_y does not hold the 2x2 grid coordinates base_image_size implies"]


def test_rope_grid_check_uses_float32_coordinates_like_the_original():
    # The original computes the grid from a float32 arange; past 2^24 patches float32 rounds the
    # index, and a buffer it wrote that way must still pass (g = 4097: 16.8 M positions).
    g = 4097
    config = {**ROPE, "image_size": 32, "base_image_size": 16 * g, "enc_patch_size": 16}
    t = torch.arange(g * g, dtype=torch.float32)
    stored = (t % g).float()
    assert not torch.equal(stored, (torch.arange(g * g) % g).float())  # float32 really does differ here
    conv = convert_tokenizer(config, {"encoder.freqs_t_x": stored}, "maetok")
    assert conv.notes == [] and conv.report.mismatched == []


def test_nonfinite_or_misshaped_unused_tensor_is_reported_by_name():
    bad = torch.zeros(768, 3, 16, 16)
    bad[0, 0, 0, 0] = float("nan")
    state = {"decoder.model.patch_embed.proj.weight": bad, "decoder.model.patch_embed.proj.bias": torch.zeros(5)}
    conv = convert_tokenizer(VIT, state, "maetok")
    assert conv.report.nonfinite == ["decoder.model.patch_embed.proj.weight"]
    assert conv.report.mismatched == [("decoder.model.patch_embed.proj.bias", (5,), (768,))]
    assert conv.report.missing == [] and conv.state_dict == {}


def test_decoder_pos_embed_of_a_rope_model_is_reported_with_whole_number_shapes(parity):
    config, overrides, state = parity["maetok"]
    state = {**state, "decoder.model.pos_embed": torch.zeros(1, 5, 48)}
    conv = convert_tokenizer(config, state, "maetok", overrides)
    assert conv.report.format() == (
        "  1 shape mismatch(es) (checkpoint vs model):\n    decoder.model.pos_embed  [1, 5, 48] vs [1, 17, 48]"
    )


def test_codebook_presence_tells_which_class_to_load_with():
    codebook = {"quantize.embedding": torch.zeros(1, 4, 8)}
    assert convert_tokenizer(VIT, codebook, "maetok").notes == [
        "the checkpoint has a SoftVQ codebook (quantize.embedding): load it with AutoencoderSoftVQ"
    ]
    assert convert_tokenizer(VIT, {}, "softvq").notes == [
        "the checkpoint has no codebook (quantize.embedding): if it is MAETok, load it with AutoencoderMAETok"
    ]
    assert convert_tokenizer(VIT, codebook, "softvq").notes == []
    assert convert_tokenizer(VIT, {}, "maetok").notes == []


# -- building the model (models.hub) ----------------------------------------------------------------


def test_build_tokenizer_config_refusal_names_the_source_and_the_key(parity):
    config, overrides, state = parity["maetok_ape"]
    conv = convert_tokenizer(config, state, "maetok", overrides)
    conv.config = {**conv.config, "image_size": "32"}
    assert _refusal(build_tokenizer, conv) == (
        "checkpoint: config describes a model this package cannot build: "
        "checkpoint config: image_size must be an int, got '32' (str)"
    )
    with pytest.raises(CheckpointError) as err:
        build_tokenizer(conv, source="/snap")
    assert str(err.value).startswith("/snap: config describes a model this package cannot build: /snap config: ")


def test_build_tokenizer_lists_every_note_on_its_own_line(parity):
    config, overrides, state = parity["maetok"]
    state = {**state, "encoder.freqs_t_x": torch.zeros(16), "decoder.freqs_t_y": torch.zeros(16)}
    conv = convert_tokenizer(config, state, "maetok", overrides)
    msg = _refusal(build_tokenizer, conv)
    assert msg.startswith("checkpoint does not match AutoencoderMAETok({'image_size': 32, ")
    assert msg.endswith(
        "}):\n"  # nothing else is wrong: an empty report, then the notes
        "\n  decoder.freqs_t_y does not hold the 4x4 grid coordinates base_image_size implies"
        "\n  encoder.freqs_t_x does not hold the 4x4 grid coordinates base_image_size implies"
    )


def test_build_tokenizer_loads_in_float32_unless_a_dtype_is_given(parity):
    # A half-precision checkpoint comes out float32 by default, as the published float32 ones do.
    config, overrides, state = parity["maetok_ape"]
    half = {k: v.to(torch.bfloat16) for k, v in state.items()}
    model = build_tokenizer(convert_tokenizer(config, half, "maetok", overrides))
    assert {p.dtype for p in model.parameters()} == {torch.float32} and not model.training
    assert torch.equal(model.quant_conv.weight, half["quant_conv.weight"].float())
    model = build_tokenizer(convert_tokenizer(config, state, "maetok", overrides), torch_dtype=torch.float16)
    assert {p.dtype for p in model.parameters()} == {torch.float16}


def test_snapshot_that_is_not_a_folder_is_refused(tmp_path):
    file = tmp_path / "model.safetensors"
    file.write_bytes(b"x")
    for path in (file, tmp_path / "missing"):
        assert _refusal(convert_tokenizer_snapshot, path, "maetok") == f"{path} is not a directory"


def test_snapshot_mismatch_names_the_folder_and_the_layout(tmp_path, parity):
    config, overrides, state = parity["softvq"]
    state = {k: v for k, v in state.items() if k != "quant_conv.bias"}
    (tmp_path / "config.json").write_text(json.dumps(config))
    save_file(state, str(tmp_path / "model.safetensors"))
    msg = _refusal(convert_tokenizer_snapshot, tmp_path, "softvq", overrides)
    assert msg.startswith(f"{tmp_path} (continuous_tokenizer softvq layout) does not match AutoencoderSoftVQ(")
    assert msg.endswith("}):\n  1 model tensor(s) missing from the checkpoint:\n    quant_conv.bias  [8]")


@pytest.mark.parametrize(
    "config, original",
    [
        ({"num_latent_tokens": 128, "codebook_embed_dim": 12, "encoder_model": SMALL}, True),  # exactly the three
        ({**VIT, "num_latent_tokens": 128, "codebook_embed_dim": 12}, True),
        ({"num_latent_tokens": 128, "codebook_embed_dim": 12}, False),
        ({"num_latent_tokens": 128, "encoder_model": SMALL, "enc_type": "vit"}, False),
        (
            {
                "_class_name": "AutoencoderMAETok",
                "num_latent_tokens": 128,
                "codebook_embed_dim": 12,
                "encoder_model": SMALL,
            },
            False,
        ),
        ([("num_latent_tokens", 128), ("codebook_embed_dim", 12), ("encoder_model", SMALL)], False),
        ("num_latent_tokens codebook_embed_dim encoder_model", False),
    ],
)
def test_an_original_tokenizer_config_has_the_three_modelargs_fields_and_no_class_name(config, original):
    assert is_tokenizer_config(config) is original
