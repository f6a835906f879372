"""Input checks pinned to their exact sentences (checks.py, and the seed check of the decode settings)."""

import numpy as np
import pytest
import torch
from fixtures.errors import error_message

from diffusers_mdiffae.checks import check_fixed_size_images, check_images, check_latents, check_token_latents
from diffusers_mdiffae.models.sampling import check_seed


def test_image_messages():
    assert error_message(check_images, np.zeros((1, 3, 16, 16)), 3, 16) == "images must be a torch.Tensor, got ndarray"
    assert error_message(check_images, torch.zeros(1, 3, 16, 16, dtype=torch.uint8), 3, 16) == (
        "images must be a floating-point tensor, got dtype torch.uint8; convert integer images with x.float() / 127.5 - 1"
    )
    assert error_message(check_images, torch.zeros(3, 16, 16), 3, 16) == (
        "images must have rank 4 [B, C, H, W], got rank 3 with shape (3, 16, 16); add a batch dimension with x.unsqueeze(0)"
    )
    assert error_message(check_images, torch.zeros(16, 16), 3, 16) == (
        "images must have rank 4 [B, C, H, W], got rank 2 with shape (16, 16)"
    )
    assert (
        error_message(check_images, torch.zeros(0, 3, 16, 16), 3, 16)
        == "images has an empty batch (shape (0, 3, 16, 16))"
    )
    assert error_message(check_images, torch.zeros(1, 16, 16, 3), 3, 16) == (
        "images must have 3 channels in dim 1, got shape (1, 16, 16, 3); pass NCHW RGB (convert grayscale/RGBA to RGB, "
        "permute NHWC with x.permute(0, 3, 1, 2))"
    )
    assert error_message(check_images, torch.zeros(1, 3, 40, 70), 3, 16) == (
        "image height and width must be multiples of 16, got 40x70; pad or crop to 32x64 (or 48x80)"
    )
    assert error_message(check_images, torch.zeros(1, 3, 7, 33), 3, 16) == (
        "image height and width must be multiples of 16, got 7x33; pad or crop to 16x32 (or 16x48)"
    )
    x = torch.zeros(1, 3, 16, 16)
    x[0, 0, :2, 0] = float("nan")
    x[0, 2, 5, 5] = float("-inf")
    assert error_message(check_images, x, 3, 16) == (
        "images contains 3 NaN or infinite values; clean the input before encoding/decoding"
    )


def test_latent_messages():
    assert error_message(check_latents, torch.zeros(2, 5, 3, 3), 64) == (
        "latents must have 64 channels in dim 1, got shape (2, 5, 3, 3); were they produced by a different autoencoder?"
    )
    assert error_message(check_latents, [1.0], 64) == "latents must be a torch.Tensor, got list"
    z = torch.zeros(1, 4, 2, 2)
    z[0, 1, 1, 1] = float("inf")
    assert error_message(check_latents, z, 4) == (
        "latents contains 1 NaN or infinite values; clean the input before encoding/decoding"
    )


def test_fixed_size_image_messages():
    assert error_message(check_fixed_size_images, torch.zeros(1, 4, 32, 32), 3, 32) == (
        "images must have 3 channels in dim 1, got shape (1, 4, 32, 32); pass NCHW RGB (convert grayscale/RGBA to "
        "RGB, permute NHWC with x.permute(0, 3, 1, 2))"
    )
    assert error_message(check_fixed_size_images, torch.zeros(1, 3, 48, 40), 3, 32) == (
        "image is 48x40 but this model takes 32x32; resize it first (e.g. VaeImageProcessor(...).preprocess(image, "
        "height=32, width=32) or torch.nn.functional.interpolate(x, size=(32, 32), mode='bicubic', antialias=True))"
    )
    x = torch.zeros(1, 3, 32, 32)
    x[0, 1, 3, 3] = float("nan")
    assert error_message(check_fixed_size_images, x, 3, 32) == (
        "images contains 1 NaN or infinite values; clean the input before encoding/decoding"
    )
    check_fixed_size_images(torch.zeros(2, 3, 32, 32), 3, 32)


def test_token_latent_messages():
    assert (
        error_message(check_token_latents, np.zeros((1, 8, 4)), 8, 4) == "latents must be a torch.Tensor, got ndarray"
    )
    assert error_message(check_token_latents, torch.zeros(1, 8, 4, dtype=torch.int64), 8, 4) == (
        "latents must be a floating-point tensor, got dtype torch.int64"
    )
    assert error_message(check_token_latents, torch.zeros(8, 4), 8, 4) == (
        "latents must have rank 3 [B, 8, 4] (1-D tokens), got rank 2 with shape (8, 4); add a batch dimension "
        "with z.unsqueeze(0)"
    )
    assert error_message(check_token_latents, torch.zeros(1, 4, 2, 2), 8, 4) == (
        "latents must have rank 3 [B, 8, 4] (1-D tokens), got rank 4 with shape (1, 4, 2, 2)"
    )
    assert (
        error_message(check_token_latents, torch.zeros(0, 8, 4), 8, 4)
        == "latents have an empty batch (shape (0, 8, 4))"
    )
    assert error_message(check_token_latents, torch.zeros(1, 7, 4), 8, 4) == (
        "latents must have 8 tokens in dim 1, got shape (1, 7, 4); were they produced by a different tokenizer?"
    )
    assert error_message(check_token_latents, torch.zeros(1, 8, 5), 8, 4) == (
        "latents must have width 4 in dim 2, got shape (1, 8, 5); were they produced by a different tokenizer?"
    )
    z = torch.zeros(2, 8, 4)
    z[1, 2, 3] = float("inf")
    z[0, 0, 0] = float("nan")
    assert error_message(check_token_latents, z, 8, 4) == (
        "latents contains 2 NaN or infinite values; clean the input before encoding/decoding"
    )
    check_token_latents(torch.zeros(2, 8, 4, dtype=torch.bfloat16), 8, 4)


def test_meta_tensors_are_checked_for_shape_only():
    check_images(torch.zeros(1, 3, 32, 16, device="meta"), 3, 16)
    check_latents(torch.zeros(1, 4, 2, 2, device="meta"), 4)
    with pytest.raises(ValueError, match="4 channels"):
        check_latents(torch.zeros(1, 3, 2, 2, device="meta"), 4)


def test_every_float_dtype_passes():
    for dtype in (torch.float16, torch.bfloat16, torch.float32, torch.float64):
        check_images(torch.zeros(1, 3, 16, 16, dtype=dtype), 3, 16)


def test_seed_messages():
    assert error_message(check_seed, 1.5) == "seed must be an int or None, got 1.5 (float)"
    assert error_message(check_seed, True) == "seed must be an int or None, got True (bool)"
    assert error_message(check_seed, -1) == "seed must be in [0, 2**64), got -1"
    assert error_message(check_seed, 2**64, "decoder_seed") == f"decoder_seed must be in [0, 2**64), got {2**64}"
    assert check_seed(1) == 1


def test_fixed_size_images_refuse_what_is_not_a_float_image_batch_naming_images():
    assert error_message(check_fixed_size_images, [[0.0]], 3, 32) == "images must be a torch.Tensor, got list"
    assert error_message(check_fixed_size_images, torch.zeros(1, 3, 32, 32, dtype=torch.int32), 3, 32) == (
        "images must be a floating-point tensor, got dtype torch.int32; convert integer images with x.float() / 127.5 - 1"
    )
    assert error_message(check_fixed_size_images, torch.zeros(3, 32, 32), 3, 32) == (
        "images must have rank 4 [B, C, H, W], got rank 3 with shape (3, 32, 32); add a batch dimension with x.unsqueeze(0)"
    )
    assert error_message(check_fixed_size_images, torch.zeros(0, 3, 32, 32), 3, 32) == (
        "images has an empty batch (shape (0, 3, 32, 32))"
    )


def test_fixed_size_images_own_size_sentence_gets_height_width_and_size():
    refusal = "this tokenizer takes {size}x{size} images, got {h}x{w}"
    assert error_message(check_fixed_size_images, torch.zeros(1, 3, 48, 40), 3, 32, refusal) == (
        "this tokenizer takes 32x32 images, got 48x40"
    )
    check_fixed_size_images(torch.zeros(1, 3, 32, 32), 3, 32, refusal)  # the right size passes
    x = torch.zeros(1, 3, 32, 32)
    x[0, 0, 0, 0] = float("inf")
    assert error_message(check_fixed_size_images, x, 3, 32, refusal) == (
        "images contains 1 NaN or infinite values; clean the input before encoding/decoding"
    )
