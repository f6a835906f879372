"""The tokenizer loader node (MAETok, SoftVQ-VAE, VMAE) against the stand-in ComfyUI (no ComfyUI needed)."""

import pytest
import torch
from fixtures import fake_comfy
from fixtures.models import TOKENIZER_SIZE, TOKENIZERS, make_tiny, make_tiny_tokenizer, place_tokenizers

S = TOKENIZER_SIZE


@pytest.fixture(scope="module")
def placed(tmp_path_factory):
    models = tmp_path_factory.mktemp("models")
    return models, place_tokenizers(models)


@pytest.fixture
def comfy(placed):
    models, paths = placed
    state = fake_comfy.install(models, batch_chunk=1)
    state.nodes = fake_comfy.import_node_module("nodes")
    state.paths = paths
    state.root = models / "tokenizers"
    yield state
    fake_comfy.uninstall(state)


def choice(comfy, kind):
    return str(comfy.paths[kind].relative_to(comfy.root))


def load(comfy, kind, pick="auto"):
    return comfy.nodes.MDiffAETokenizerLoader.execute(choice(comfy, kind), pick, "auto").args[0]


def pixels(b=2, size=S, seed=0):
    return torch.rand(b, size, size, 3, generator=torch.Generator().manual_seed(seed))


def test_loader_lists_every_tokenizer_and_its_schema(comfy):
    schema = comfy.nodes.MDiffAETokenizerLoader.define_schema()
    assert schema.node_id == "MDiffAETokenizerLoader" and [o.io_type for o in schema.outputs] == ["VAE"]
    listed = schema.inputs[0].options
    assert {choice(comfy, k) for k in TOKENIZERS} <= set(listed)
    assert {choice(comfy, k) for k in TOKENIZERS} == {
        "maetok-b-128/model.safetensors",
        "softvq-bl-64/model.safetensors",
        "vmaef8d16.pth",
    }
    assert [i.id for i in schema.inputs] == ["checkpoint", "kind", "dtype"]


@pytest.mark.parametrize("kind", list(TOKENIZERS))
def test_stock_encode_and_decode_equal_the_model(comfy, kind):
    vae = load(comfy, kind)
    model = make_tiny_tokenizer(kind)
    x = pixels()
    z = vae.encode(x)
    ref = model.encode(x.movedim(-1, 1) * 2 - 1).latent_dist.mode()
    if kind == "vmae":
        assert z.shape == (2, 4, S // 8, S // 8)
        assert torch.allclose(z, ref, atol=1e-5)
    else:  # 1-D tokens travel channels-first, [B, d, L]
        assert z.shape == (2, 4, 8)
        assert torch.allclose(z, ref.transpose(1, 2), atol=1e-5)
    image = vae.decode(z)
    want = model.decode(ref).sample
    assert image.shape == (2, S, S, 3)
    assert torch.allclose(image, ((want + 1) / 2).clamp(0, 1).movedim(1, -1), atol=1e-5)


@pytest.mark.parametrize("kind", list(TOKENIZERS))
def test_tiled_encode_and_decode_are_refused_with_a_sentence(comfy, kind):
    vae = load(comfy, kind)
    z = vae.encode(pixels(1))
    for call in (lambda: vae.decode_tiled(z, tile_x=64, tile_y=64, overlap=16), lambda: vae.encode_tiled(pixels(1))):
        with pytest.raises(ValueError, match="cannot encode or decode in tiles.*plain VAE Encode / VAE Decode"):
            call()


@pytest.mark.parametrize(
    "kind, what",
    [
        ("maetok", "1-D latent tokens that each describe the whole image"),
        ("softvq", "1-D latent tokens that each describe the whole image"),
        ("vmae", "a fixed-size latent"),
    ],
)
def test_the_tile_refusal_says_what_the_latent_is(comfy, kind, what):
    vae = load(comfy, kind)
    family = type(vae.first_stage_model.vae).__name__
    with pytest.raises(ValueError) as e:
        vae.encode_tiled(pixels(1))
    assert str(e.value) == (
        f"{family} cannot encode or decode in tiles: it has {what} ({S}x{S} images); "
        "use the plain VAE Encode / VAE Decode nodes"
    )


def test_tokenizer_vae_tells_comfyui_the_memory_per_batch(comfy):
    # the tiny MAETok: widest ViT 32 * mlp 4 -> 128 * 6 = 768; patch 16: 6 * 16 * 16 * 3 = 4608;
    # n = (256 / 16)**2 + 8 tokens = 264; 2 heads: 2 * 264 = 528 -> 5904 values per token
    vae = load(comfy, "maetok")
    assert vae.memory_used_encode((2, 3, S, S), torch.float32) == 2 * 264 * 5904 * 4
    assert vae.memory_used_decode((3, 4, 8), torch.bfloat16) == 3 * 264 * 5904 * 2
    # the tiny VMAE: 24 * 4 -> 96 * 6 = 576; patch 8: 1152; n = (256 / 8)**2 = 1024; 12 heads -> 12288
    vae = load(comfy, "vmae")
    assert vae.memory_used_decode((1, 4, 32, 32), torch.float32) == 1024 * (576 + 1152 + 12288) * 4


def test_tokenizer_loader_validation_names_each_bad_choice(comfy):
    validate = comfy.nodes.MDiffAETokenizerLoader.validate_inputs
    good = {"checkpoint": choice(comfy, "maetok"), "kind": "auto", "dtype": "auto"}
    assert validate(**good) is True
    listed = ", ".join(repr(c) for c in comfy.nodes.tokenizer_choices())
    assert (
        validate(**{**good, "checkpoint": "missing.pth"})
        == f"checkpoint 'missing.pth' is not one of its choices: {listed}."
    )
    assert (
        validate(**{**good, "kind": "vq"})
        == "kind 'vq' is not one of its choices: 'auto', 'maetok', 'softvq', 'vmae'."
    )
    assert validate(**{**good, "dtype": "fp8"}) == (
        "dtype 'fp8' is not one of its choices: 'auto', 'float32', 'bfloat16', 'float16'."
    )
    # a linked checkpoint or kind arrives as None: nothing to check yet
    assert validate(checkpoint=None, kind="auto", dtype="auto") is True
    assert validate(checkpoint=good["checkpoint"], kind=None, dtype=None) is True
    # execute refuses each of them too, with the same sentence, before loading anything
    for bad in ({"checkpoint": "missing.pth"}, {"kind": "vq"}, {"dtype": "fp8"}):
        with pytest.raises(ValueError) as e:
            comfy.nodes.MDiffAETokenizerLoader.execute(**{**good, **bad})
        assert str(e.value) == validate(**{**good, **bad})


@pytest.mark.parametrize("kind", ["maetok", "vmae"])
def test_a_wrong_image_size_names_the_size_to_resize_to(comfy, kind):
    vae = load(comfy, kind)
    with pytest.raises(ValueError, match=rf"image is 128x128.*takes {S}x{S}.*ImageScale"):
        vae.encode(pixels(1, size=128))


def test_a_latent_of_another_model_is_refused(comfy):
    vae = load(comfy, "maetok")
    with pytest.raises(ValueError, match=r"decodes \[B, d, L\] tokens latents with 4 channels"):
        vae.decode(torch.zeros(1, 64, 4, 4))


def test_kind_forces_the_class_and_a_wrong_one_is_refused_by_tensor(comfy):
    assert type(load(comfy, "softvq", "softvq").first_stage_model.vae).__name__ == "AutoencoderSoftVQ"
    with pytest.raises(ValueError, match="AutoencoderMAETok"):
        load(comfy, "softvq", "maetok")


def test_validation_refuses_an_mdiffae_folder_and_names_the_right_loader(comfy):
    folder = comfy.root / "not_a_tokenizer"
    make_tiny().save_pretrained(folder)
    try:
        problem = comfy.nodes.MDiffAETokenizerLoader.validate_inputs(
            checkpoint="not_a_tokenizer/diffusion_pytorch_model.safetensors", kind="auto", dtype="auto"
        )
        assert "AutoencoderMDiffAE" in problem and "MDiffAE Loader" in problem
    finally:
        import shutil

        shutil.rmtree(folder)


def test_an_original_folder_is_told_apart_by_its_quantizer_tensors(tmp_path):
    import json

    from safetensors.torch import save_file

    from diffusers_mdiffae.comfy_bridge import tokenizer_class_name

    for name, keys, want in (
        ("a", ["quantize.embedding.weight"], "AutoencoderSoftVQ"),
        ("b", [], "AutoencoderMAETok"),
    ):
        folder = tmp_path / name
        folder.mkdir()
        (folder / "config.json").write_text(json.dumps({"image_size": 256, "enc_type": "vit"}))
        save_file({k: torch.zeros(1) for k in ["encoder.x", *keys]}, str(folder / "model.safetensors"))
        assert tokenizer_class_name(folder / "model.safetensors") == want


def test_a_weights_file_linked_in_alone_loads_its_real_folder(tmp_path, placed):
    from diffusers_mdiffae.comfy_bridge import load_tokenizer

    link = tmp_path / "linked.safetensors"
    link.symlink_to(placed[1]["maetok"])
    assert type(load_tokenizer(link)).__name__ == "AutoencoderMAETok"


def test_a_pickle_that_would_run_code_is_refused_and_does_not_run(comfy, tmp_path):
    import os

    marker = tmp_path / "ran"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    evil = comfy.root / "evil.pth"
    torch.save({"model": Evil()}, evil)
    try:
        with pytest.raises(ValueError, match="evil.pth"):
            comfy.nodes.MDiffAETokenizerLoader.execute("evil.pth", "auto", "auto")
        assert not marker.exists()
    finally:
        evil.unlink()
