"""comfy_bridge pinned: the memory estimates ComfyUI splits batches by (against their formulas worked
by hand), the node-input sentences for every kind of range, and the IMAGE layout's clamping."""

import pytest
import torch
from fixtures.errors import error_message
from fixtures.models import make_tiny

import diffusers_mdiffae as pkg
from diffusers_mdiffae.comfy_bridge import (
    ComfyMDiffAEModule,
    ComfyTokenizerModule,
    InputSpec,
    check_values,
    model_to_image,
)

# -- mDiffAE: decode_memory / encode_memory ---------------------------------------------------------

# make_tiny(): model_dim 32, mlp_ratio 2, patch 16, 3 channels: per position
# int(32 * 2) * 6 + 6 * 16**2 * 3 = 384 + 4608 = 4992 values.
PER_POSITION = 4992


def test_decode_memory_is_the_activation_estimate_per_position_doubled_for_pdg():
    module = ComfyMDiffAEModule(make_tiny())
    # 2 latents of 3x5 positions, float32 (4 bytes); PDG runs the batch twice
    assert module.decode_memory((2, 64, 3, 5), torch.float32) == 2 * 2 * 15 * PER_POSITION * 4 == 1198080
    assert module.decode_memory((2, 64, 3, 5), torch.float32, pdg=False) == 2 * 15 * PER_POSITION * 4 == 599040
    assert module.decode_memory((1, 64, 4, 4), torch.bfloat16) == 1 * 2 * 16 * PER_POSITION * 2 == 319488
    # only [B, C, h, w] is read: a longer shape does not change the estimate
    assert module.decode_memory(torch.Size((1, 64, 4, 4, 7)), torch.bfloat16) == 319488


def test_decode_memory_follows_the_model_width_and_patch():
    module = ComfyMDiffAEModule(
        make_tiny(model_dim=48, mlp_ratio=3.0, patch_size=8, block_out_channels=(8, 8, 8, 8), latent_channels=8)
    )
    # int(48 * 3) * 6 + 6 * 8**2 * 3 = 864 + 1152 = 2016 values per position
    assert module.decode_memory((1, 8, 2, 3), torch.float32, pdg=False) == 6 * 2016 * 4 == 48384


def test_encode_memory_is_a_single_pass_over_the_patch_grid_rounded_up():
    module = ComfyMDiffAEModule(make_tiny())
    # a 40x72 image covers ceil(40/16) x ceil(72/16) = 3 x 5 patches; no PDG when encoding
    assert module.encode_memory((2, 3, 40, 72), torch.float32) == 2 * 15 * PER_POSITION * 4 == 599040
    assert module.encode_memory((1, 3, 64, 64), torch.bfloat16) == 16 * PER_POSITION * 2 == 159744
    assert module.encode_memory(torch.Size((1, 3, 64, 64, 1)), torch.bfloat16) == 159744


# -- MAETok / SoftVQ-VAE / VMAE: memory ---------------------------------------------------------------


def _maetok(enc_dim, enc_heads, dec_dim, dec_heads):
    torch.manual_seed(0)
    return pkg.AutoencoderMAETok(
        image_size=32,
        enc_patch_size=8,
        dec_patch_size=16,
        encoder_embed_dim=enc_dim,
        encoder_depth=1,
        encoder_num_heads=enc_heads,
        decoder_embed_dim=dec_dim,
        decoder_depth=1,
        decoder_num_heads=dec_heads,
        num_latent_tokens=8,
        codebook_embed_dim=4,
    )


@pytest.mark.parametrize("widest", ["encoder", "decoder"])
def test_tokenizer_memory_uses_the_widest_vit_the_encoder_patch_and_the_most_heads(widest):
    dims = (48, 6, 32, 8) if widest == "encoder" else (32, 8, 48, 6)
    module = ComfyTokenizerModule(_maetok(*dims))
    # widest 48 * mlp 4 -> 192 * 6 = 1152; encoder patch 8: 6 * 8 * 8 * 3 = 1152;
    # n = (32 / 8)**2 + 8 tokens = 24; most heads 8: 8 * 24 = 192 -> 2496 values per token
    assert module.memory(3, torch.float32) == 3 * 24 * 2496 * 4 == 718848


def _vmae(enc_heads=12, dec_heads=12):
    torch.manual_seed(0)
    return pkg.AutoencoderVMAE(
        img_size=32,
        patch_size=8,
        embed_dim=24,
        depth=1,
        num_heads=enc_heads,
        decoder_embed_dim=24,
        decoder_depth=1,
        decoder_num_heads=dec_heads,
        latent_dim=4,
    )


@pytest.mark.parametrize("enc_heads, dec_heads", [(12, 6), (6, 12)])
def test_vmae_memory_has_no_latent_tokens_and_counts_the_most_heads(enc_heads, dec_heads):
    module = ComfyTokenizerModule(_vmae(enc_heads, dec_heads))
    # 24 * 4 -> 96 * 6 = 576; 6 * 8 * 8 * 3 = 1152; n = (32 / 8)**2 = 16; 12 heads * 16 = 192 -> 1920
    assert module.memory(2, torch.bfloat16) == 2 * 16 * 1920 * 2 == 122880


# -- node input sentences -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "spec, value, message",
    [
        (InputSpec("n", "INT", max=3), 5, "n must be a whole number of at most 3, got 5."),
        (InputSpec("x", "FLOAT", max=2.5), 3.0, "x must be a number of at most 2.5, got 3.0."),
        (InputSpec("n", "INT", min=1), 0, "n must be a whole number of at least 1, got 0."),
        (InputSpec("n", "INT", min=10**7), 1, "n must be a whole number of at least 10000000, got 1."),
        (InputSpec("n", "INT", min=0, max=10**7), -1, "n must be a whole number from 0 to 10000000, got -1."),
        (InputSpec("x", "FLOAT", min=0.25, max=1e7), -1, "x must be a number from 0.25 to 1e+07, got -1."),
        (InputSpec("n", "INT"), "a", "n must be a whole number, got 'a'."),
        (InputSpec("x", "FLOAT"), float("inf"), "x must be a number, got inf."),
    ],
)
def test_a_number_out_of_range_is_refused_naming_exactly_the_bounds_it_has(spec, value, message):
    assert check_values([spec], {spec.name: value}) == message


def test_choices_are_listed_as_they_print_and_counted_only_past_twelve():
    numbers = InputSpec("size", "COMBO", options=(256, 512))
    assert check_values([numbers], {"size": 3}) == "size 3 is not one of its choices: 256, 512."
    paths = InputSpec("file", "COMBO", options=(pkg.DEMO_MODEL_DIR.parent,))
    assert check_values([paths], {"file": "x"}) == f"file 'x' is not one of its choices: {pkg.DEMO_MODEL_DIR.parent}."
    twelve = InputSpec("ckpt", "COMBO", options=tuple(f"f{i}" for i in range(12)))
    assert check_values([twelve], {"ckpt": "zz"}).endswith(", 'f10', 'f11'.")
    thirteen = InputSpec("ckpt", "COMBO", options=tuple(f"f{i}" for i in range(13)))
    assert check_values([thirteen], {"ckpt": "zz"}).endswith(", 'f10', 'f11', ... (13 in all).")


# -- layouts ----------------------------------------------------------------------------------------


def test_model_to_image_clamps_to_the_unit_range():
    x = torch.tensor([-3.0, -1.0, 0.0, 0.5, 1.0, 3.0]).view(1, 1, 1, 6).expand(1, 3, 1, 6)
    image = model_to_image(x)
    assert image.shape == (1, 1, 6, 3) and image.dtype == torch.float32
    assert image[0, 0, :, 0].tolist() == [0.0, 0.0, 0.5, 0.75, 1.0, 1.0]


# -- what a wrong file or a wrong tensor is told ------------------------------------------------------


def test_a_folder_of_another_kind_is_refused_naming_what_its_config_describes(tmp_path):
    import json

    from diffusers_mdiffae.comfy_bridge import describe_checkpoint, load_any

    folder = tmp_path / "sdvae"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"_class_name": "AutoencoderKL"}))
    assert error_message(describe_checkpoint, folder) == (
        "sdvae is not an mDiffAE-family checkpoint: its config.json describes AutoencoderKL "
        "(use the stock Load VAE node for other VAEs)"
    )
    (folder / "config.json").write_text("{}")
    assert error_message(load_any, folder / "weights.safetensors").startswith(
        "weights.safetensors is not an mDiffAE-family checkpoint: its config.json describes an unknown model"
    )
    (folder / "config.json").write_text("{broken")
    assert error_message(describe_checkpoint, folder) == "sdvae: its folder's config.json cannot be read as JSON"
    empty = tmp_path / "empty"
    empty.mkdir()
    assert error_message(load_any, empty) == (
        "empty is not an mDiffAE-family checkpoint: expected a .safetensors file or a folder with config.json "
        "and the weights (save_pretrained's layout, or a published snapshot)"
    )


def test_a_tokenizer_path_of_another_kind_is_refused_with_what_to_do(tmp_path):
    import json

    from diffusers_mdiffae.comfy_bridge import load_tokenizer, tokenizer_class_name

    assert error_message(tokenizer_class_name, tmp_path, "vq") == "kind 'vq' is not one of auto, maetok, softvq, vmae"
    folder = tmp_path / "tok"
    folder.mkdir()
    assert error_message(tokenizer_class_name, folder) == (
        "tok is not a tokenizer checkpoint: expected an LDMAE .pth file or a folder with config.json and "
        "model.safetensors (an original MAETok/SoftVQ-VAE repository, or save_pretrained's layout)"
    )
    (folder / "config.json").write_text(json.dumps({"image_size": 256}))
    assert (
        error_message(tokenizer_class_name, folder)
        == "tok: expected one .safetensors file next to config.json, found 0"
    )
    (folder / "model.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{broken}")
    assert error_message(tokenizer_class_name, folder).startswith(
        "model.safetensors: not a readable safetensors file ("
    )
    (folder / "config.json").write_text(json.dumps({"_class_name": "AutoencoderMDiffAE"}))
    assert error_message(tokenizer_class_name, folder / "model.safetensors") == (
        "model.safetensors is not a MAETok, SoftVQ-VAE or VMAE checkpoint: its config describes AutoencoderMDiffAE "
        "(use the MDiffAE Loader for the mDiffAE family, the stock Load VAE node for others)"
    )
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a checkpoint")
    assert error_message(load_tokenizer, junk).startswith("junk.pth: cannot load as AutoencoderVMAE: ")


def test_an_image_of_another_layout_or_size_is_refused_with_the_size_to_use():
    from diffusers_mdiffae.comfy_bridge import image_to_model

    assert error_message(image_to_model, torch.zeros(16, 32, 3)) == "IMAGE must be [B, H, W, C], got shape (16, 32, 3)"
    module = ComfyTokenizerModule(_maetok(32, 2, 32, 2))
    assert error_message(module.check_image, torch.zeros(1, 3, 96, 128)) == (
        "image is 128x96; AutoencoderMAETok takes 32x32 images only (its positions are learned for that size): "
        "resize or crop to 32x32 first, e.g. with ImageScale"
    )
    assert error_message(module.check_image, torch.zeros(5)).startswith("image is (5,); ")
    assert error_message(module.check_image, torch.zeros(96, 128)).startswith("image is 128x96; ")  # width x height


def test_a_latent_of_another_model_is_refused_with_the_layout_it_needs():
    tokens = ComfyTokenizerModule(_maetok(32, 2, 32, 2))
    assert error_message(tokens.decode, torch.zeros(1, 64, 4, 4)) == (
        "latent has shape (1, 64, 4, 4); AutoencoderMAETok decodes [B, d, L] tokens latents with 4 channels "
        "(from VAE Encode with this VAE)"
    )
    assert error_message(ComfyTokenizerModule(_vmae()).decode, torch.zeros(1, 4, 8)) == (
        "latent has shape (1, 4, 8); AutoencoderVMAE decodes [B, C, h, w] latents with 4 channels "
        "(from VAE Encode with this VAE)"
    )


# -- the module's decode defaults and dtypes ----------------------------------------------------------


def test_the_module_decodes_by_default_one_step_without_guidance_from_seed_zero():
    vae = make_tiny()
    module = ComfyMDiffAEModule(vae)
    assert (module.default_steps, module.default_pdg_strength, module.default_seed) == (1, 1.0, 0)
    assert (module.default_sampler, module.default_schedule, module.default_strength) == ("ddim", "linear", 1.0)
    z = torch.randn(1, 64, 2, 2, generator=torch.Generator().manual_seed(3))
    want = vae.decode(
        z, num_inference_steps=1, pdg_strength=1.0, seed=0, sampler="ddim", schedule="linear", strength=1.0
    ).sample
    assert torch.equal(module.decode(z), want)
    guided = vae.decode(z, num_inference_steps=1, pdg_strength=2.0, seed=0).sample
    assert not torch.equal(guided, want)  # so the default is seen: guidance changes even one step
    assert torch.equal(module.decode(z, pdg_strength=2.0), guided)


def test_the_modules_own_defaults_fill_every_option_a_call_leaves_out():
    """A loader-made module (non-default settings) decodes with them when ComfyUI passes nothing."""
    vae = make_tiny()
    module = ComfyMDiffAEModule(
        vae, steps=3, pdg_strength=1.5, seed=11, sampler="dpmpp_2m", schedule="cosine", strength=0.6
    )
    z = torch.randn(1, 64, 2, 2, generator=torch.Generator().manual_seed(4))
    want = vae.decode(
        z, num_inference_steps=3, pdg_strength=1.5, seed=11, sampler="dpmpp_2m", schedule="cosine", strength=0.6
    ).sample
    assert torch.equal(module.decode(z), want)
    # each default is seen: overriding it alone changes the result
    for option, other in (("sampler", "ddim"), ("schedule", "linear")):
        assert not torch.equal(module.decode(z, **{option: other}), want)


def test_images_are_cast_to_the_model_dtype_before_encoding():
    vae = make_tiny().to(torch.bfloat16)
    x = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(0)) * 2 - 1
    z = ComfyMDiffAEModule(vae).encode(x)
    assert z.dtype == torch.bfloat16 and torch.equal(z, vae.encode(x.bfloat16()).latent)
    tokenizer = _maetok(32, 2, 32, 2).to(torch.bfloat16)
    tokens = ComfyTokenizerModule(tokenizer).encode(x)
    assert tokens.dtype == torch.bfloat16 and tokens.shape == (1, 4, 8)
    assert torch.equal(tokens, tokenizer.encode(x.bfloat16()).latent_dist.mode().transpose(1, 2))


def test_a_value_the_half_precision_model_cannot_hold_is_refused_not_turned_into_nan():
    # 1e5 is finite in float32 and infinite in float16: checked in the model's dtype, it is refused
    tokenizer, vae = ComfyTokenizerModule(_maetok(32, 2, 32, 2).half()), ComfyMDiffAEModule(make_tiny().half())
    x = torch.zeros(1, 3, 32, 32)
    x[0, 0, 0, 0] = 1e5
    refusal = "images contains 1 NaN or infinite values; clean the input before encoding/decoding"
    assert error_message(tokenizer.encode, x) == refusal
    assert error_message(vae.encode, x) == refusal
    tokens, z = torch.zeros(1, 4, 8), torch.zeros(1, 64, 2, 2)
    tokens[0, 0, 0] = z[0, 0, 0, 0] = 1e5
    refusal = "latents contains 1 NaN or infinite values; clean the input before encoding/decoding"
    assert error_message(tokenizer.decode, tokens) == refusal
    assert error_message(vae.decode, z) == refusal


# -- which files belong to their folder -------------------------------------------------------------


def _touch(folder, *names, config=None):
    import json

    folder.mkdir(parents=True, exist_ok=True)
    if config is not None:
        (folder / "config.json").write_text(json.dumps(config))
    for name in names:
        (folder / name).write_bytes(b"")
    return folder


def test_a_weights_file_is_the_folders_by_its_name_or_as_the_only_safetensors_beside_config(tmp_path):
    from diffusers_mdiffae.comfy_bridge import is_folder_weights

    two = _touch(tmp_path / "two", "diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.fp16.safetensors")
    _touch(two, config={"_class_name": "AutoencoderMDiffAE"})
    assert is_folder_weights(two / "diffusion_pytorch_model.safetensors")
    assert is_folder_weights(two / "diffusion_pytorch_model.fp16.safetensors")  # the name before the first dot
    snap = _touch(tmp_path / "snap", "model.safetensors", "model.ema.safetensors", config={"bottleneck_dim": 64})
    assert is_folder_weights(snap / "model.ema.safetensors")
    other = _touch(tmp_path / "other", "a.safetensors", "b.safetensors", config={})
    assert not is_folder_weights(other / "a.safetensors")  # two unrelated files beside a config: single files
    one = _touch(tmp_path / "one", "weights.safetensors", config={})
    assert is_folder_weights(one / "weights.safetensors")
    bare = _touch(tmp_path / "bare", "diffusion_pytorch_model.safetensors")
    assert not is_folder_weights(bare / "diffusion_pytorch_model.safetensors")  # no config.json: a single file


def test_a_variant_weights_file_is_judged_by_its_folders_config_not_its_header(tmp_path):
    from diffusers_mdiffae.comfy_bridge import describe_checkpoint

    folder = _touch(
        tmp_path / "kl",
        "diffusion_pytorch_model.safetensors",
        "diffusion_pytorch_model.fp16.safetensors",
        config={"_class_name": "AutoencoderKL"},
    )
    assert error_message(describe_checkpoint, folder / "diffusion_pytorch_model.fp16.safetensors") == (
        "diffusion_pytorch_model.fp16.safetensors is not an mDiffAE-family checkpoint: its config.json describes "
        "AutoencoderKL (use the stock Load VAE node for other VAEs)"
    )


def test_a_published_snapshot_with_a_config_of_another_shape_is_refused_with_the_layouts_words(tmp_path):
    from test_convert import ORIGINAL

    from diffusers_mdiffae.comfy_bridge import describe_checkpoint, load_any

    snap = _touch(tmp_path / "snap", config=dict(ORIGINAL["mdiffae_v1"][0], bogus=1))
    message = "config.json has fields the mdiffae_v1 layout does not know: ['bogus']"
    assert error_message(describe_checkpoint, snap) == message
    assert error_message(load_any, snap / "model.safetensors") == message
    _touch(snap, config={"bottleneck_dim": 64})
    assert error_message(describe_checkpoint, snap) == (
        "config.json lacks ['model_dim', 'patch_size']: is this an mDiffAE-family snapshot?"
    )


def test_a_config_that_is_not_a_json_object_describes_an_unknown_model(tmp_path):
    from diffusers_mdiffae.comfy_bridge import describe_checkpoint, load_any

    folder = tmp_path / "listed"
    folder.mkdir()
    for text in ("[1, 2]", '"AutoencoderMDiffAE"', "null"):
        (folder / "config.json").write_text(text)
        assert error_message(describe_checkpoint, folder) == (
            "listed is not an mDiffAE-family checkpoint: its config.json describes an unknown model "
            "(use the stock Load VAE node for other VAEs)"
        )
        assert error_message(load_any, folder).startswith("listed is not an mDiffAE-family checkpoint: ")


def test_a_tokenizer_config_that_is_not_a_json_object_names_no_class_so_the_weights_must_decide(tmp_path):
    from diffusers_mdiffae.comfy_bridge import tokenizer_class_name

    folder = tmp_path / "listed"
    folder.mkdir()
    # a string naming a class is not a config naming one: only an object's _class_name counts
    for text in ("[1, 2]", '"AutoencoderMAETok"', "null"):
        (folder / "config.json").write_text(text)
        assert error_message(tokenizer_class_name, folder) == (
            "listed: expected one .safetensors file next to config.json, found 0"
        )


@pytest.mark.parametrize("form", ["single file", "folder", "snapshot"])
def test_every_checkpoint_form_loads_in_the_dtype_asked_for(tmp_path, form):

    from fixtures.fake_original import to_original_layout
    from safetensors.torch import save_file
    from test_convert import ORIGINAL

    from diffusers_mdiffae.comfy_bridge import load_any

    model = make_tiny(seed=4)
    if form == "single file":
        path = tmp_path / "tiny.safetensors"
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    elif form == "folder":
        model.save_pretrained(tmp_path / "tiny")
        path = tmp_path / "tiny" / "diffusion_pytorch_model.safetensors"
    else:
        path = _touch(tmp_path / "snap", config=ORIGINAL["mdiffae_v1"][0]) / "model.safetensors"
        save_file(to_original_layout(model.state_dict()), str(path))
    for dtype in (torch.bfloat16, torch.float16):
        loaded = load_any(path, torch_dtype=dtype)
        assert {p.dtype for p in loaded.parameters()} == {dtype}
        ref = model.state_dict()
        assert all(torch.equal(v, ref[k].to(v.dtype)) for k, v in loaded.state_dict().items())
    assert {p.dtype for p in load_any(path).parameters()} == {torch.float32}


# -- tokenizers: which file is which ------------------------------------------------------------------


@pytest.mark.parametrize("name", ["vmae.pth", "vmae.pt", "VMAE.PTH", "vmae.Pt"])
def test_a_pth_or_pt_file_is_an_ldmae_vmae_whatever_the_case_of_its_suffix(tmp_path, name):
    from diffusers_mdiffae.comfy_bridge import tokenizer_class_name

    (tmp_path / name).write_bytes(b"")  # the suffix decides; nothing is read
    assert tokenizer_class_name(tmp_path / name) == "AutoencoderVMAE"
    assert tokenizer_class_name(tmp_path / name, "maetok") == "AutoencoderMAETok"  # kind forces the class


def test_a_weights_file_linked_into_a_folder_with_its_own_config_is_that_folders(tmp_path):
    from diffusers_mdiffae.comfy_bridge import tokenizer_class_name

    real = _touch(tmp_path / "softvq", "model.safetensors", config={"_class_name": "AutoencoderSoftVQ"})
    placed = _touch(tmp_path / "maetok", config={"_class_name": "AutoencoderMAETok"})
    (placed / "model.safetensors").symlink_to(real / "model.safetensors")
    assert tokenizer_class_name(placed / "model.safetensors") == "AutoencoderMAETok"
    alone = tmp_path / "models"
    alone.mkdir()
    (alone / "model.safetensors").symlink_to(real / "model.safetensors")
    assert tokenizer_class_name(alone / "model.safetensors") == "AutoencoderSoftVQ"  # no config here: the link's
    plain = _touch(tmp_path / "plain", "model.safetensors")
    assert error_message(tokenizer_class_name, plain / "model.safetensors").startswith(
        "model.safetensors is not a tokenizer checkpoint: expected an LDMAE .pth file"
    )


@pytest.mark.parametrize("dtype", [torch.bfloat16, None])
def test_a_tokenizer_loads_in_the_dtype_asked_for_from_a_folder_or_its_weights_file(tmp_path, dtype):
    from fixtures.models import make_tiny_tokenizer

    from diffusers_mdiffae.comfy_bridge import load_tokenizer

    make_tiny_tokenizer("maetok").save_pretrained(tmp_path / "maetok")
    for path in (tmp_path / "maetok", tmp_path / "maetok" / "diffusion_pytorch_model.safetensors"):
        loaded = load_tokenizer(path, torch_dtype=dtype)
        assert type(loaded).__name__ == "AutoencoderMAETok"
        assert {p.dtype for p in loaded.parameters()} == {dtype or torch.float32}


def test_a_single_file_checkpoint_is_described_by_its_class_name(tmp_path):
    from diffusers_mdiffae.comfy_bridge import describe_checkpoint
    from diffusers_mdiffae.conversion.single_file import save_single_file

    save_single_file(make_tiny(), tmp_path / "m.safetensors")
    save_single_file(make_tiny(), tmp_path / "bare.safetensors", with_config=False)  # config read from the shapes
    assert describe_checkpoint(tmp_path / "m.safetensors") == "AutoencoderMDiffAE"
    assert describe_checkpoint(tmp_path / "bare.safetensors") == "AutoencoderMDiffAE"


def test_each_vmae_training_checkpoint_of_a_shared_folder_loads_from_its_own_file(tmp_path):
    """ComfyUI's tokenizers folder holds several; the suffix may be .pth or .pt in any case."""
    from fixtures.models import make_tiny_tokenizer, write_vmae_pth

    from diffusers_mdiffae.comfy_bridge import load_tokenizer

    for seed, name in enumerate(["a.pth", "b.pt", "C.PTH"]):
        tiny = make_tiny_tokenizer("vmae", seed=seed)
        write_vmae_pth(tiny, tmp_path / name)
        loaded = load_tokenizer(tmp_path / name)
        assert type(loaded).__name__ == "AutoencoderVMAE"
        assert all(torch.equal(a, b) for a, b in zip(loaded.state_dict().values(), tiny.state_dict().values()))


def test_a_saved_folder_loads_from_the_folder_itself(tmp_path):
    from diffusers_mdiffae.comfy_bridge import load_any

    tiny = make_tiny()
    tiny.save_pretrained(tmp_path / "m")
    loaded = load_any(tmp_path / "m")
    assert all(torch.equal(a, b) for a, b in zip(loaded.state_dict().values(), tiny.state_dict().values()))
