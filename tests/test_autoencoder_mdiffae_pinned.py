"""autoencoder_mdiffae pinned: the constructor checks every family member shares, each sentence exactly."""

import pytest

from diffusers_mdiffae.models.autoencoders.autoencoder_mdiffae import check_common_config

GOOD = {
    "in_channels": 3,
    "out_channels": 3,
    "patch_size": 4,
    "block_out_channels": (8, 8, 8),
    "latents_mean": None,
    "latents_std": None,
    "decoder_num_inference_steps": 1,
    "sample_size": 4,
}


@pytest.mark.parametrize(
    "edit, message",
    [
        ({"out_channels": 4}, "in_channels (3) and out_channels (4) must match"),
        ({"patch_size": 0}, "patch_size must be a power of two, got 0"),
        ({"patch_size": 6}, "patch_size must be a power of two, got 6"),
        (
            {"block_out_channels": (8, 8)},
            "block_out_channels must have log2(patch_size) + 1 = 3 entries so pipelines derive the factor 4; got 2",
        ),
        (
            {"patch_size": 1, "block_out_channels": (8, 8)},
            "block_out_channels must have log2(patch_size) + 1 = 1 entries so pipelines derive the factor 1; got 2",
        ),
        (
            {"latents_mean": [0.0]},
            "latents_mean/latents_std must be None: SDXL-family pipelines reshape them to 4 channels",
        ),
        (
            {"latents_std": [1.0]},
            "latents_mean/latents_std must be None: SDXL-family pipelines reshape them to 4 channels",
        ),
        ({"decoder_num_inference_steps": 0}, "decoder_num_inference_steps must be >= 1, got 0"),
        ({"sample_size": 6}, "sample_size (6) must be a multiple of patch_size (4)"),
    ],
)
def test_each_shared_constructor_check_says_what_is_wrong(edit, message):
    with pytest.raises(ValueError) as info:
        check_common_config(**{**GOOD, **edit})
    assert str(info.value) == message


def test_the_smallest_valid_settings_pass():
    check_common_config(**GOOD)
    check_common_config(**{**GOOD, "patch_size": 1, "block_out_channels": (8,), "sample_size": 1})
