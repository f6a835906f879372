"""Single-file inference (conversion/single_file.py), pinned number by number and sentence by sentence.

``infer_config`` reads only names and shapes, so most tests hand it the shapes of a tiny model with
one name or shape edited; the expected values are worked out from the blocks' own rule
(``int(width * mlp_ratio)`` hidden channels) and the refusal sentences are pinned whole.
"""

from __future__ import annotations

import json
import re
import struct

import pytest
import torch
from fixtures.errors import error_message
from fixtures.models import make_tiny
from safetensors.torch import save_file

from diffusers_mdiffae import AutoencoderMDiffAE
from diffusers_mdiffae.conversion.layouts import CheckpointError
from diffusers_mdiffae.conversion.single_file import config_from_metadata, describe, infer_config, load_single_file

NOT_FAMILY = "m.safetensors is not an mDiffAE-family checkpoint: it has "
INCOMPLETE = "m.safetensors is not a complete mDiffAE-family checkpoint: it has no "


def shapes_of(model) -> dict:
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


@pytest.fixture(scope="module")
def dico():
    return shapes_of(make_tiny())


@pytest.fixture(scope="module")
def fcdm():
    return shapes_of(make_tiny(family="semdisdiffae"))


def refusal(shapes, source="m.safetensors") -> str:
    args = (shapes,) if source is None else (shapes, source)
    return error_message(infer_config, *args, error=CheckpointError)


def without(shapes, *parts) -> dict:
    return {k: v for k, v in shapes.items() if not any(p in k for p in parts)}


# -- mlp_ratio -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "width, hidden, ratio",
    [
        (32, 64, 2.0),  # one decimal
        (3, 8, 2.7),  # one decimal, though two (2.67) rebuild it too
        (7, 10, 1.43),  # two, though three (1.429) rebuild it too
        (7, 8, 1.143),  # three, though four (1.1429) rebuild it too
        (32, 40, 1.25),  # two
        (32, 36, 1.125),  # three
        (48, 53, 1.1042),  # four: 1.104 gives int(52.99) = 52
        (56, 60, 1.071429),  # six: 1.0714 and 1.07143 give 59
        (112, 137, 1.22321429),  # eight: 1.223214 gives 136
        (116, 128, 1.10344828),  # eight: 1.103448 gives 127
        (24, 32, 32 / 24),  # no rounding up to eight decimals gives 32: the exact quotient
        (48, 64, 64 / 48),
    ],
)
def test_the_inferred_mlp_ratio_is_the_shortest_decimal_that_rebuilds_the_hidden_width(dico, width, hidden, ratio):
    shapes = dict(dico)
    shapes["decoder.patchify.proj.weight"] = (width, 3, 16, 16)
    shapes["decoder.blocks.0.mlp.conv_in.weight"] = (hidden, width, 1, 1)
    config = infer_config(shapes)[1]
    assert config["model_dim"] == width
    assert config["mlp_ratio"] == ratio
    assert int(width * config["mlp_ratio"]) == hidden


def test_the_tiny_models_mlp_ratio_and_kernel_and_rank_are_read_back(dico, fcdm):
    for shapes in (dico, fcdm):
        config = infer_config(shapes)[1]
        assert (config["mlp_ratio"], config["depthwise_kernel_size"], config["adaln_low_rank_rank"]) == (2.0, 7, 8)


# -- which family ------------------------------------------------------------------------------------


def test_semdis_without_its_latent_statistics_is_still_read_from_its_block_names(fcdm):
    bare = without(fcdm, "latent_norm_running_")
    assert bare.keys() < fcdm.keys()
    assert infer_config(bare) == infer_config(fcdm)


def test_either_fcdm_block_name_alone_marks_the_family(fcdm):
    # grn without pwconv1 (and no latent statistics): FCDM, which then lacks its hidden layer
    no_pwconv = without(fcdm, "latent_norm_running_", ".pwconv1.")
    assert refusal(no_pwconv) == INCOMPLETE + "decoder.middle_blocks.0.pwconv1.weight"
    # pwconv1 without grn: FCDM, complete for inference
    assert infer_config(without(fcdm, "latent_norm_running_", ".grn."))[0] == "AutoencoderSemDisDiffAE"


def test_the_latent_statistics_alone_mark_the_fcdm_family(fcdm):
    blockless = without(fcdm, ".pwconv1.", ".grn.")
    assert "latent_norm_running_mean" in blockless
    assert refusal(blockless) == INCOMPLETE + "decoder.middle_blocks.0.pwconv1.weight"


def test_both_and_neither_block_family_are_refused_with_their_sentences(dico, fcdm):
    both = {**fcdm, **{k: v for k, v in dico.items() if ".conv1." in k or ".cca." in k}}
    assert refusal(both) == NOT_FAMILY + "both FCDM (pwconv1, grn) and DiCo (conv1, cca) blocks"
    assert refusal(without(dico, ".cca.")) == (
        NOT_FAMILY + "neither FCDM blocks (pwconv1, grn) nor DiCo blocks (conv1, cca)"
    )
    # DiCo needs both conv1 and cca
    assert refusal(without(dico, ".conv1.")) == (
        NOT_FAMILY + "neither FCDM blocks (pwconv1, grn) nor DiCo blocks (conv1, cca)"
    )


@pytest.mark.parametrize("alias", [".ffn.", ".conv_mlp.", ".mlp_block."])
def test_dico_mlp_aliases_are_read_like_the_canonical_name(dico, alias):
    spelt = {k.replace(".mlp.", alias): v for k, v in dico.items()}
    assert not any(".mlp." in k for k in spelt)
    assert infer_config(spelt) == infer_config(dico)


def test_dico_cca_aliases_are_read_like_the_canonical_name(dico):
    for alias in (".cca.1.", ".cca.conv.", ".cca.fc."):
        spelt = {k.replace(".cca.proj.", alias): v for k, v in dico.items()}
        assert infer_config(spelt) == infer_config(dico)


# -- patch geometry ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "proj, geometry",
    [
        ((32, 3, 8, 8), (32, 3, 8)),
        ((32, 4, 8, 8), (32, 4, 8)),  # a square kernel over any number of channels
        ((40, 3, 2, 2), (40, 3, 2)),
        ((32, 768, 1, 1), (32, 3, 16)),  # PixelUnshuffle + 1x1
        ((32, 48, 1, 1), (32, 3, 4)),
        ((32, 3, 1, 1), (32, 3, 1)),
    ],
)
def test_patch_geometry_from_the_patch_embedding(dico, proj, geometry):
    config = infer_config({**dico, "decoder.patchify.proj.weight": proj})[1]
    assert (config["model_dim"], config["in_channels"], config["patch_size"]) == geometry
    assert config["out_channels"] == geometry[1]
    patch = geometry[2]
    assert config["block_out_channels"] == [geometry[0]] * (patch.bit_length())
    assert config["sample_size"] == max(512 // patch, 1) * patch


@pytest.mark.parametrize("proj", [(32, 5, 16, 8), (32, 6, 4, 2), (32, 7, 1, 1), (32, 49, 1, 1)])
def test_a_patch_embedding_of_another_form_is_refused(dico, proj):
    """Neither a square kernel nor a 1x1 kernel over 3 * p * p channels (PixelUnshuffle form)."""
    shapes = {**dico, "decoder.patchify.proj.weight": proj}
    assert refusal(shapes) == (
        f"m.safetensors: decoder.patchify.proj.weight has shape {list(proj)}, not a patch embedding"
    )


def test_a_patch_embedding_of_the_wrong_rank_is_refused(dico):
    shapes = {**dico, "decoder.patchify.proj.weight": (32, 3, 16)}
    assert (
        refusal(shapes) == "m.safetensors: decoder.patchify.proj.weight has shape [32, 3, 16], expected 4 dimensions"
    )


@pytest.mark.parametrize("patch, blocks", [(512, 10), (1024, 11)])
def test_a_patch_of_512_pixels_or_more_makes_the_sample_one_patch(dico, patch, blocks):
    config = infer_config({**dico, "decoder.patchify.proj.weight": (32, 3, patch, patch)})[1]
    assert config["sample_size"] == patch
    assert config["block_out_channels"] == [32] * blocks  # log2(patch) + 1


@pytest.mark.parametrize("proj, patch", [((32, 0, 1, 1), 0), ((32, 3, 3, 3), 3), ((32, 27, 1, 1), 3)])
def test_a_patch_that_is_not_a_power_of_two_is_refused_when_the_model_is_built(tmp_path, proj, patch):
    """The inference leaves the sizes that need log2(patch) to the build, whose sentence names the patch."""
    sd = {k: v.contiguous() for k, v in make_tiny().state_dict().items()}
    sd["decoder.patchify.proj.weight"] = torch.zeros(proj)
    path = tmp_path / "m.safetensors"
    save_file(sd, str(path))
    assert error_message(load_single_file, path, error=CheckpointError) == (
        f"m.safetensors: config describes a model this package cannot build: patch_size must be a power of two, "
        f"got {patch}"
    )


# -- depths ------------------------------------------------------------------------------------------


def test_missing_blocks_are_refused_naming_the_file(dico, fcdm):
    assert refusal(without(dico, "decoder.blocks.")) == INCOMPLETE + "decoder blocks"
    assert refusal(without(fcdm, "decoder.middle_blocks.")) == INCOMPLETE + "decoder blocks"
    assert refusal(without(dico, "encoder.blocks.")) == INCOMPLETE + "encoder blocks"
    assert refusal(without(fcdm, "encoder.blocks.")) == INCOMPLETE + "encoder blocks"


def test_a_flat_and_a_skip_decoder_together_are_refused(dico):
    shapes = {**dico, "decoder.middle_blocks.0.conv1.weight": (32, 32, 1, 1)}
    assert refusal(shapes) == (
        "m.safetensors has both a flat decoder (decoder.blocks) and a skip decoder "
        "(decoder.start_blocks/middle_blocks/end_blocks)"
    )


def test_block_indices_with_a_gap_are_refused(dico):
    shapes = {k.replace("decoder.blocks.1.", "decoder.blocks.2."): v for k, v in dico.items()}
    assert refusal(shapes) == "decoder.blocks block indices are not 0..1: [0, 2]"


def test_depths_of_flat_and_skip_decoders(dico, fcdm):
    flat = infer_config(dico)[1]
    assert (
        flat["encoder_depth"],
        flat["decoder_depth"],
        flat["decoder_start_blocks"],
        flat["decoder_end_blocks"],
    ) == (
        1,
        2,
        0,
        0,
    )
    skip = infer_config(fcdm)[1]
    assert (
        skip["encoder_depth"],
        skip["decoder_depth"],
        skip["decoder_start_blocks"],
        skip["decoder_end_blocks"],
    ) == (
        1,
        4,
        1,
        1,
    )


@pytest.mark.parametrize("family", ["mdiffae_v2", "semdisdiffae"])
@pytest.mark.parametrize("start, end", [(1, 0), (0, 1)])
def test_a_skip_decoder_with_blocks_on_one_side_only_is_read_from_its_middle_blocks(family, start, end):
    # start or end alone makes the decoder a skip decoder (no decoder.blocks at all)
    model = make_tiny(family=family, decoder_start_blocks=start, decoder_end_blocks=end)
    config = infer_config(shapes_of(model))[1]
    assert (config["decoder_depth"], config["decoder_start_blocks"], config["decoder_end_blocks"]) == (4, start, end)
    assert (config["mlp_ratio"], config["depthwise_kernel_size"]) == (2.0, 7)


# -- the tensors infer_config reads, each refused by name --------------------------------------------


def test_without_a_source_the_refusal_says_checkpoint(dico):
    assert refusal(without(dico, "decoder.latent_up."), source=None) == (
        "checkpoint is not a complete mDiffAE-family checkpoint: it has no decoder.latent_up.weight"
    )
    assert refusal(without(dico, "encoder.blocks."), source=None) == (
        "checkpoint is not a complete mDiffAE-family checkpoint: it has no encoder blocks"
    )


@pytest.mark.parametrize(
    "family, name",
    [
        ("dico", "decoder.latent_up.weight"),
        ("dico", "decoder.blocks.0.mlp.conv_in.weight"),
        ("dico", "decoder.blocks.0.conv2.weight"),
        ("dico", "decoder.adaln_deltas.0.down.weight"),
        ("fcdm", "decoder.middle_blocks.0.pwconv1.weight"),
        ("fcdm", "decoder.middle_blocks.0.dwconv.weight"),
        ("fcdm", "decoder.adaln_deltas.0.down.weight"),
        ("fcdm", "encoder.to_bottleneck.weight"),
    ],
)
def test_each_tensor_infer_config_reads_is_named_when_missing_or_of_the_wrong_rank(request, family, name):
    shapes = request.getfixturevalue(family)
    assert name in shapes
    assert refusal({k: v for k, v in shapes.items() if k != name}) == INCOMPLETE + name
    wrong = (*shapes[name], 1)
    ndim = len(shapes[name])
    assert refusal({**shapes, name: wrong}) == (
        f"m.safetensors: {name} has shape {list(wrong)}, expected {ndim} dimensions"
    )


@pytest.mark.parametrize(
    "family, name", [("dico", "decoder.blocks.0.conv2.weight"), ("fcdm", "decoder.middle_blocks.0.dwconv.weight")]
)
@pytest.mark.parametrize("kernel", [(7, 5), (5, 7)])
def test_a_depthwise_kernel_that_is_not_square_is_refused_naming_it(request, family, name, kernel):
    # its size is read from this one tensor; the build would blame every other block's square kernel instead
    shapes = request.getfixturevalue(family)
    wrong = (32, 1, *kernel)
    assert refusal({**shapes, name: wrong}) == (
        f"m.safetensors: {name} has shape {list(wrong)}, not a square depthwise kernel"
    )


def test_a_dico_file_without_a_guidance_feature_is_refused(dico):
    assert refusal(without(dico, "mask_feature")) == INCOMPLETE + (
        "guidance feature in its decoder (decoder.mask_feature, "
        "decoder.latent_mask_feature or decoder.path_drop_mask_feature)"
    )


# -- loading ---------------------------------------------------------------------------------------


def save(model, path, dtype=None):
    save_file(
        {k: (v if dtype is None else v.to(dtype)).contiguous() for k, v in model.state_dict().items()}, str(path)
    )
    return path


def test_load_single_file_casts_to_the_dtype_asked_for_and_to_float32_by_default(tmp_path):
    model = make_tiny(seed=4)
    path = save(model, tmp_path / "m.safetensors", torch.bfloat16)
    assert {p.dtype for p in load_single_file(path).parameters()} == {torch.float32}
    assert {p.dtype for p in load_single_file(path, torch_dtype=torch.float64).parameters()} == {torch.float64}
    half = load_single_file(path, torch_dtype=torch.bfloat16)
    assert {p.dtype for p in half.parameters()} == {torch.bfloat16}
    assert torch.equal(half.state_dict()["decoder.latent_up.weight"], model.decoder.latent_up.weight.bfloat16())


def test_a_file_that_does_not_match_its_inferred_model_is_refused_naming_the_file(tmp_path):
    sd = {k: v.contiguous() for k, v in make_tiny().state_dict().items() if not k.startswith("decoder.blocks.1.")}
    path = tmp_path / "broken.safetensors"
    save_file(sd, str(path))
    with pytest.raises(CheckpointError) as err:
        load_single_file(path)
    assert str(err.value).startswith("broken.safetensors does not match AutoencoderMDiffAE({")
    assert type(load_single_file(save(make_tiny(), tmp_path / "ok.safetensors"))) is AutoencoderMDiffAE


def write_raw(path, header: dict, data: bytes):
    """A safetensors file byte by byte, so its header can hold what save_file would never write."""
    text = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(text)) + text + data)
    return path


@pytest.mark.parametrize(
    "entry, why",
    [
        (
            {"dtype": "F32", "data_offsets": [0, 4]},
            "shape",
        ),  # safetensors names what is wrong (its wording varies by version)
        ({"dtype": "F33", "shape": [1], "data_offsets": [0, 4]}, "F33"),
    ],
)
def test_a_header_safetensors_cannot_open_is_refused_naming_the_file(tmp_path, entry, why):
    # the offsets are sound, so only safetensors' own parse finds the fault; its words go in the brackets
    path = write_raw(tmp_path / "m.safetensors", {"decoder.latent_up.weight": entry}, bytes(4))
    for read in (describe, load_single_file):
        message = error_message(read, path, error=CheckpointError)
        assert re.fullmatch(r"m\.safetensors: cannot read the safetensors header \(.+\)", message), message
        assert why in message


def test_a_file_whose_metadata_config_is_not_an_object_is_refused_naming_the_file(tmp_path):
    path = tmp_path / "m.safetensors"
    save_file({"w": torch.zeros(1)}, str(path), metadata={"config": "[1, 2]"})
    for read in (describe, load_single_file):
        assert error_message(read, path, error=CheckpointError) == (
            "m.safetensors: the config in its metadata is not a JSON object"
        )


# -- the config in the metadata --------------------------------------------------------------------

CLASSES = "['AutoencoderMDiffAE', 'AutoencoderSemDisDiffAE']"


def metadata_refusal(config, source="m.safetensors") -> str:
    args = ({"config": json.dumps(config)},) if source is None else ({"config": json.dumps(config)}, source)
    return error_message(config_from_metadata, *args, error=CheckpointError)


def test_a_metadata_config_sheds_the_underscore_keys_of_diffusers():
    # only a leading underscore marks a diffusers bookkeeping key
    config = {"_class_name": "AutoencoderSemDisDiffAE", "_diffusers_version": "0.31.0", "model_dim": 32, "x_": 1}
    assert config_from_metadata({"config": json.dumps(config)}) == (
        "AutoencoderSemDisDiffAE",
        {"model_dim": 32, "x_": 1},
    )


@pytest.mark.parametrize("config", [{"model_dim": 32}, {"_class_name": None}, {"_class_name": ""}])
def test_a_metadata_config_without_a_class_name_describes_an_unknown_model(config):
    assert metadata_refusal(config) == (
        f"m.safetensors: the config in its metadata describes an unknown model, not one of {CLASSES}"
    )


def test_without_a_source_a_metadata_refusal_says_checkpoint():
    assert metadata_refusal([1, 2], source=None) == "checkpoint: the config in its metadata is not a JSON object"
    assert metadata_refusal({"_class_name": "AutoencoderKL"}, source=None) == (
        f"checkpoint: the config in its metadata describes AutoencoderKL, not one of {CLASSES}"
    )
