"""The ComfyUI node pack against small stand-ins for ComfyUI (no ComfyUI needed)."""

import asyncio
import importlib
import importlib.util
import json
import sys
from pathlib import Path

import pytest
import torch
from fixtures import fake_comfy
from fixtures.errors import error_message
from fixtures.models import FAMILIES, make_tiny

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def comfy(tmp_path):
    state = fake_comfy.install(tmp_path / "models", batch_chunk=1)
    nodes = fake_comfy.import_node_module("nodes")
    state.nodes = nodes
    (tmp_path / "models" / "mdiffae").mkdir(parents=True)
    make_tiny().save_pretrained(tmp_path / "models" / "mdiffae" / "tiny")
    yield state
    fake_comfy.uninstall(state)


def load_vae(comfy, steps=1, pdg=1.0, seed=0, checkpoint="mdiffae/tiny/diffusion_pytorch_model.safetensors"):
    return comfy.nodes.MDiffAELoader.execute(checkpoint, steps, pdg, seed, "auto").args[0]


def save_single(model, path):
    from safetensors.torch import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    return path


def build_workflows():
    sys.path.insert(0, str(ROOT / "workflows"))
    try:
        import build_workflows
    finally:
        sys.path.remove(str(ROOT / "workflows"))
    return build_workflows


def test_library_import_does_not_import_comfyui():
    import subprocess

    code = (
        "import sys, diffusers_mdiffae, diffusers_mdiffae.comfy_bridge; print(any(m.startswith('comfy') "
        "and m != 'comfy_bridge' for m in sys.modules if not m.startswith('diffusers_mdiffae')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "False"


def test_schemas_are_prefixed_and_typed(comfy):
    schemas = {n.define_schema().node_id: n.define_schema() for n in comfy.nodes.NODES}
    assert set(schemas) == {
        "MDiffAELoader",
        "MDiffAEEncode",
        "MDiffAEDecode",
        "MDiffAELatentPreview",
        "MDiffAEEmptyLatent",
        "MDiffAETokenizerLoader",
    }
    loader = schemas["MDiffAELoader"]
    assert [i.id for i in loader.inputs] == ["checkpoint", "steps", "pdg_strength", "seed", "dtype"]
    assert "mdiffae/tiny/diffusion_pytorch_model.safetensors" in loader.inputs[0].options
    assert loader.inputs[3].control_after_generate is False  # a loader default: no "control after generate"
    assert [o.io_type for o in loader.outputs] == ["VAE"]
    decode = schemas["MDiffAEDecode"]
    inputs = {i.id: i for i in decode.inputs}
    assert list(inputs) == ["samples", "vae", "steps", "pdg_strength", "seed", "sampler", "schedule", "strength"]
    assert inputs["seed"].control_after_generate is True
    assert inputs["sampler"].options == ["ddim", "dpmpp_2m"] and inputs["schedule"].options == ["linear", "cosine"]
    ranges = {
        k: (inputs[k].min, inputs[k].max, inputs[k].step, inputs[k].default) for k in ("strength", "pdg_strength")
    }
    assert ranges == {"strength": (0.01, 1.0, 0.01, 1.0), "pdg_strength": (0.0, 5.0, 0.01, 1.0)}
    assert [o.io_type for o in decode.outputs] == ["IMAGE"]
    empty = schemas["MDiffAEEmptyLatent"]
    assert [(i.id, i.io_type) for i in empty.inputs][0] == ("vae", "VAE")  # channels come from the model


def test_entrypoint_lists_the_nodes(comfy):
    ext = asyncio.run(comfy.nodes.comfy_entrypoint())
    assert len(asyncio.run(ext.get_node_list())) == 6


def test_repository_root_is_a_loadable_custom_node_package(comfy):
    spec = importlib.util.spec_from_file_location(
        "custom_nodes_mdiffae", ROOT / "__init__.py", submodule_search_locations=[str(ROOT)]
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    try:
        spec.loader.exec_module(module)
        assert asyncio.iscoroutinefunction(module.comfy_entrypoint)
        assert not hasattr(module, "NODE_CLASS_MAPPINGS")  # V1 mappings would hide the V3 entry point
    finally:
        for k in [k for k in sys.modules if k.startswith("custom_nodes_mdiffae")]:
            del sys.modules[k]


def test_loader_builds_a_vae_the_stock_nodes_accept(comfy):
    vae = load_vae(comfy, steps=3, pdg=1.1, seed=5)
    assert isinstance(vae, comfy.nodes.MDiffAEVAE)
    assert vae.latent_channels == 64 and vae.downscale_ratio == vae.upscale_ratio == 16
    assert vae.disable_offload is False and vae.crop_input is True
    module = vae.first_stage_model
    ops = sys.modules["comfy.ops"].disable_weight_init
    layers = [m for m in module.modules() if isinstance(m, (torch.nn.Linear, torch.nn.Conv2d))]
    assert layers and all(type(m) in (ops.Linear, ops.Conv2d) for m in layers)  # ComfyUI casts/offloads them
    assert (module.default_steps, module.default_pdg_strength, module.default_seed) == (3, 1.1, 5)
    memory = vae.memory_used_decode
    assert memory((1, 64, 32, 32), torch.float32) > memory((1, 64, 16, 16), torch.float32)
    # stock VAEEncode / VAEDecode path: IMAGE in, LATENT out, IMAGE back at the input size
    image = torch.rand(2, 48, 64, 3)
    z = vae.encode(image)
    assert z.shape == (2, 64, 3, 4)
    out = vae.decode(z)
    assert out.shape == (2, 48, 64, 3) and 0 <= out.min() and out.max() <= 1


def test_loader_refuses_a_checkpoint_of_the_wrong_kind(comfy, tmp_path):
    from safetensors.torch import save_file

    vae_dir = tmp_path / "models" / "vae"
    vae_dir.mkdir(parents=True)
    save_file({"decoder.conv_in.weight": torch.zeros(4, 4, 3, 3)}, vae_dir / "sd_vae.safetensors")
    with pytest.raises(
        ValueError,
        match="sd_vae.safetensors is not an mDiffAE-family checkpoint: it has no "
        r"decoder.patchify.proj.weight \(an SD/FLUX VAE has decoder.conv_in.weight",
    ):
        load_vae(comfy, checkpoint="vae/sd_vae.safetensors")
    # refused before the run too, from the header alone
    message = comfy.nodes.MDiffAELoader.validate_inputs(checkpoint="vae/sd_vae.safetensors", dtype="auto")
    assert "sd_vae.safetensors is not an mDiffAE-family checkpoint" in message
    other = vae_dir / "kl"
    other.mkdir()
    (other / "config.json").write_text(json.dumps({"_class_name": "AutoencoderKL"}))
    save_file({"x": torch.zeros(1)}, other / "diffusion_pytorch_model.safetensors")
    with pytest.raises(ValueError, match="describes AutoencoderKL"):
        load_vae(comfy, checkpoint="vae/kl/diffusion_pytorch_model.safetensors")


def test_loader_converts_a_published_snapshot(comfy, tmp_path):
    from fixtures.fake_original import to_original_layout
    from safetensors.torch import save_file
    from test_convert import ORIGINAL

    ORIGINAL_CONFIG = ORIGINAL["mdiffae_v1"][0]

    snap = tmp_path / "models" / "mdiffae" / "mdiffae_v1"
    snap.mkdir()
    (snap / "config.json").write_text(json.dumps(ORIGINAL_CONFIG))
    model = make_tiny(seed=9)
    save_file(to_original_layout(model.state_dict()), snap / "model.safetensors")
    vae = load_vae(comfy, checkpoint="mdiffae/mdiffae_v1/model.safetensors")
    ref = model.state_dict()
    assert all(torch.equal(v, ref[k]) for k, v in vae.first_stage_model.vae.state_dict().items())


def test_decode_node_options_progress_and_per_sample_seeding(comfy):
    vae = load_vae(comfy)
    z = vae.encode(torch.rand(2, 32, 32, 3))
    images = comfy.nodes.MDiffAEDecode.execute({"samples": z}, vae, 3, 1.2, 7).args[0]
    assert images.shape == (2, 32, 32, 3)
    assert comfy.progress[-3:] == [(1, 3), (2, 3), (3, 3)]
    single = comfy.nodes.MDiffAEDecode.execute({"samples": z[1:]}, vae, 3, 1.2, 7).args[0]
    assert torch.allclose(images[1:], single, atol=1e-6)  # batch splitting does not change a sample
    # the shared VAE's defaults are untouched
    module = vae.first_stage_model
    assert (module.default_steps, module.default_pdg_strength, module.default_seed) == (1, 1.0, 0)
    other = comfy.nodes.MDiffAEDecode.execute({"samples": z}, vae, 3, 1.2, 8).args[0]
    assert not torch.equal(other, images)


def test_decode_node_seeds_past_2_63_wrap_around_to_the_torch_seed_range(comfy):
    """The widget goes to 2**64 - 1 (ComfyUI's seed range); the decoder's seeds stop below 2**63."""
    vae = load_vae(comfy)
    z = vae.encode(torch.rand(1, 32, 32, 3))
    decode = comfy.nodes.MDiffAEDecode.execute
    wrapped = decode({"samples": z}, vae, 2, 1.0, 2**63 + 7).args[0]
    assert torch.equal(wrapped, decode({"samples": z}, vae, 2, 1.0, 7).args[0])
    assert not torch.equal(wrapped, decode({"samples": z}, vae, 2, 1.0, 8).args[0])


def test_decode_node_is_interrupted_within_one_step(comfy):
    vae = load_vae(comfy)
    z = vae.encode(torch.rand(1, 32, 32, 3))
    calls = []

    def interrupt_after_two(value, total=None, preview=None):
        calls.append(value)
        if value == 2:
            comfy.interrupted = True

    comfy.nodes.comfy.utils.ProgressBar.update_absolute = lambda self, v, t=None, p=None: interrupt_after_two(v)
    with pytest.raises(fake_comfy.InterruptProcessingException):
        comfy.nodes.MDiffAEDecode.execute({"samples": z}, vae, 20, 1.0, 0)
    assert calls == [1, 2]


def test_encode_node_refuses_sizes_off_the_grid_with_a_clear_message(comfy):
    vae = load_vae(comfy)
    with pytest.raises(ValueError, match=r"image is 70x50; mDiffAE needs width and height that are multiples of 16"):
        comfy.nodes.MDiffAEEncode.execute(torch.rand(1, 50, 70, 3), vae)
    latent = comfy.nodes.MDiffAEEncode.execute(torch.rand(1, 48, 64, 4), vae).args[0]  # alpha dropped
    assert latent["samples"].shape == (1, 64, 3, 4)
    for height, width in [(50, 64), (48, 70)]:  # one side off the grid is enough to refuse
        with pytest.raises(ValueError, match=f"image is {width}x{height}; mDiffAE needs"):
            comfy.nodes.MDiffAEEncode.execute(torch.rand(1, height, width, 3), vae)


def test_nodes_refuse_foreign_vaes_and_latents(comfy):
    import comfy.sd as csd

    with pytest.raises(ValueError, match="needs a VAE from the MDiffAE Loader"):
        comfy.nodes.MDiffAEDecode.execute({"samples": torch.zeros(1, 64, 2, 2)}, csd.VAE(sd={}), 1, 1.0, 0)
    vae = load_vae(comfy)
    with pytest.raises(ValueError, match=r"latent has shape \(1, 4, 8, 8\)"):
        comfy.nodes.MDiffAEDecode.execute({"samples": torch.zeros(1, 4, 8, 8)}, vae, 1, 1.0, 0)


def test_latent_preview_and_empty_latent(comfy):
    z = torch.randn(2, 64, 3, 5)
    image = comfy.nodes.MDiffAELatentPreview.execute({"samples": z}, 16).args[0]
    assert image.shape == (2, 48, 80, 3) and 0 <= image.min() and image.max() <= 1
    empty = comfy.nodes.MDiffAEEmptyLatent.execute(load_vae(comfy), 96, 64, 3).args[0]["samples"]
    assert empty.shape == (3, 64, 4, 6) and not empty.any()
    with pytest.raises(ValueError, match="needs a VAE from the MDiffAE Loader"):
        comfy.nodes.MDiffAEEmptyLatent.execute(object(), 96, 64, 3)


def test_empty_latent_is_made_on_comfyuis_intermediate_device(comfy, monkeypatch):
    import comfy.model_management as mm

    vae = load_vae(comfy)
    monkeypatch.setattr(mm, "intermediate_device", lambda: torch.device("meta"))  # where ComfyUI wants it
    empty = comfy.nodes.MDiffAEEmptyLatent.execute(vae, 32, 16, 1).args[0]["samples"]
    assert empty.device == torch.device("meta") and empty.shape == (1, 64, 1, 2)


@pytest.mark.parametrize(
    "node, name, description",
    [
        (
            "MDiffAEEncode",
            "MDiffAE Encode",
            "Encode images to the model's latents (64, 96 or 128 channels at 1/16). Unlike the stock "
            "node, sizes that are not multiples of 16 are refused instead of cropped.",
        ),
        (
            "MDiffAELatentPreview",
            "MDiffAE Latent Preview (PCA)",
            "Show a latent as an image: its first three principal components as R, G, B.",
        ),
        (
            "MDiffAELoader",
            "MDiffAE Loader",
            "Load an mDiffAE-family autoencoder (mDiffAE v1/v2, iRDiffAE, SemDisDiffAE) as a VAE for the stock VAE "
            "Encode/Decode nodes (tiled too). Reads models/mdiffae and models/vae: a single .safetensors file "
            "(family and configuration read from its tensors), a diffusers folder (config.json + weights) or a "
            "published snapshot (converted on load). Steps, PDG and seed are the defaults the stock nodes decode "
            "with.",
        ),
        (
            "MDiffAEDecode",
            "MDiffAE Decode",
            "Decode mDiffAE-family latents with explicit steps, path-drop guidance, seed, sampler, time schedule "
            "and start strength. Every sample is seeded alone, so batch splitting does not change results. "
            "Cancellable between steps.",
        ),
        (
            "MDiffAEEmptyLatent",
            "MDiffAE Empty Latent",
            "Zeros shaped like the given VAE's latents (its channels at its factor, e.g. 64 at 1/16); the stock "
            "Empty Latent Image is 4 channels at 1/8.",
        ),
        (
            "MDiffAETokenizerLoader",
            "Load Tokenizer (MAETok / SoftVQ-VAE / VMAE)",
            "Load MAETok or SoftVQ-VAE (1-D latent tokens) or LDMAE's VMAE (a spatial latent) from "
            "models/tokenizers as a VAE for the stock VAE Encode / VAE Decode nodes. MAETok and SoftVQ-VAE: an "
            "original repository folder (config.json + model.safetensors) or a save_pretrained folder. VMAE: the "
            "original .pth (read without running any pickled code) or a save_pretrained folder. Images must be "
            "the model's size (256x256 for the published ones); tiled nodes are refused.",
        ),
    ],
)
def test_nodes_are_named_and_described_for_the_user(comfy, node, name, description):
    schema = getattr(comfy.nodes, node).define_schema()
    category = "latent/tokenizers" if node == "MDiffAETokenizerLoader" else "latent/mdiffae"
    assert (schema.node_id, schema.display_name, schema.category) == (node, name, category)
    assert schema.description == description


TOOLTIPS = {
    "steps": "decoder steps; 1 is PSNR-optimal",
    "pdg_strength": "path-drop guidance strength for multi-step decodes; 1.0 = off",
    "seed": "seed of the decoder's initial noise; every sample in a batch uses it alone",
    "sampler": "ddim, or dpmpp_2m (DPM-Solver++(2M): closer to the many-step result at a few steps)",
    "schedule": "time grid of the steps",
    "strength": "sampling starts at t = strength (1.0 = from pure noise)",
}


@pytest.mark.parametrize(
    "node, tooltips",
    [
        (
            "MDiffAELoader",
            {
                "checkpoint": None,
                "steps": TOOLTIPS["steps"],
                "pdg_strength": TOOLTIPS["pdg_strength"],
                "seed": TOOLTIPS["seed"],
                "dtype": "auto: ComfyUI's choice for VAEs on this device",
            },
        ),
        ("MDiffAEDecode", dict(samples=None, vae=None, **TOOLTIPS)),
        (
            "MDiffAETokenizerLoader",
            {
                "checkpoint": None,
                "kind": "auto: from the folder's config and tensors (quantize.* = SoftVQ-VAE; .pth = VMAE)",
                "dtype": "auto: ComfyUI's choice for VAEs",
            },
        ),
    ],
)
def test_inputs_explain_themselves_in_their_tooltips(comfy, node, tooltips):
    inputs = getattr(comfy.nodes, node).define_schema().inputs
    assert {i.id: i.tooltip for i in inputs} == tooltips


def test_only_the_decode_node_changes_its_seed_after_each_run(comfy):
    def control(node):
        return next(
            i for i in getattr(comfy.nodes, node).define_schema().inputs if i.id == "seed"
        ).control_after_generate

    assert control("MDiffAEDecode") is True and control("MDiffAELoader") is False


def test_loader_vae_tells_comfyui_the_memory_of_an_encode_and_a_decode(comfy):
    vae = load_vae(comfy)
    # the tiny model: int(32 * 2) * 6 + 6 * 16**2 * 3 = 4992 values per latent position
    # decode: 2 latents of 3x5, doubled for PDG, float32
    assert vae.memory_used_decode((2, 64, 3, 5), torch.float32) == 2 * 2 * 15 * 4992 * 4
    # encode: a 40x72 image covers 3x5 patches, one pass
    assert vae.memory_used_encode((2, 3, 40, 72), torch.bfloat16) == 2 * 15 * 4992 * 2


def test_node_refusals_say_what_to_use_instead(comfy):
    import comfy.sd as csd

    nodes = comfy.nodes
    assert error_message(nodes.require_mdiffae, csd.VAE(sd={})) == (
        "this node needs a VAE from the MDiffAE Loader node, got VAE; use the stock VAE Decode/Encode nodes for "
        "other VAEs"
    )
    assert error_message(nodes.resolve_checkpoint, "loras/x.safetensors") == (
        "checkpoint 'loras/x.safetensors' is not a file in models/mdiffae or models/vae"
    )
    assert (
        error_message(nodes.resolve_checkpoint, "mdiffae/")
        == "checkpoint 'mdiffae/' is not a file in models/mdiffae or models/vae"
    )
    vae = load_vae(comfy)
    assert error_message(nodes.MDiffAEDecode.execute, {"samples": torch.zeros(1, 4, 8, 8)}, vae, 1, 1.0, 0) == (
        "latent has shape (1, 4, 8, 8); this VAE decodes [B, 64, h, w] latents (from MDiffAE Encode or MDiffAE "
        "Empty Latent with this VAE, or a model trained on its latents)"
    )
    assert error_message(nodes.MDiffAEEmptyLatent.execute, vae, 24, 32, 1) == (
        "width and height must be multiples of 16 for this VAE, got 24x32"
    )
    assert error_message(nodes.MDiffAEEncode.execute, torch.rand(1, 50, 70, 3), vae) == (
        "image is 70x50; mDiffAE needs width and height that are multiples of 16: scale or crop it (e.g. ImageScale "
        "to 64x48), or use the stock VAE Encode node, which crops"
    )
    assert "(e.g. ImageScale to 16x16)" in error_message(nodes.MDiffAEEncode.execute, torch.rand(1, 8, 10, 3), vae)


def test_layout_conversions_round_trip():
    from diffusers_mdiffae.comfy_bridge import image_to_model, model_to_image

    image = torch.rand(2, 16, 32, 3)
    x = image_to_model(image)
    assert x.shape == (2, 3, 16, 32) and x.min() >= -1 and x.max() <= 1
    assert torch.allclose(model_to_image(x), image, atol=1e-6)
    rgba = torch.cat([image, torch.rand(2, 16, 32, 1)], dim=-1)
    assert torch.equal(image_to_model(rgba), x)  # alpha dropped
    with pytest.raises(ValueError, match=r"\[B, H, W, C\]"):
        image_to_model(torch.rand(16, 32, 3))


# -- the whole family ------------------------------------------------------------------------------


@pytest.mark.parametrize("family", sorted(FAMILIES))
@pytest.mark.parametrize("folder", ["mdiffae", "vae"])
def test_loader_takes_a_single_file_of_every_family_member(comfy, tmp_path, family, folder):
    model = make_tiny(seed=4, family=family)
    save_single(model, tmp_path / "models" / folder / f"tiny_{family}.safetensors")
    checkpoint = f"{folder}/tiny_{family}.safetensors"
    assert (
        comfy.nodes.MDiffAELoader.validate_inputs(
            checkpoint=checkpoint, steps=1, pdg_strength=1.0, seed=0, dtype="auto"
        )
        is True
    )
    vae = load_vae(comfy, checkpoint=checkpoint)
    inner = vae.first_stage_model.vae
    assert type(inner) is type(model)
    ref = model.state_dict()
    assert all(torch.equal(v, ref[k]) for k, v in inner.state_dict().items())
    channels = model.config.latent_channels
    assert vae.latent_channels == channels
    # stock VAE Encode / Decode path; SemDisDiffAE's latents are its whitened posterior mode
    image = torch.rand(1, 32, 48, 3)
    z = vae.encode(image)
    assert z.shape == (1, channels, 2, 3)
    with torch.no_grad():
        expected = model.encode(image.movedim(-1, 1) * 2 - 1).latent
    assert torch.allclose(z, expected, atol=1e-5)
    assert vae.decode(z).shape == (1, 32, 48, 3)
    # the pack's own nodes follow the model's channel count
    latent = comfy.nodes.MDiffAEEncode.execute(image, vae).args[0]
    assert latent["samples"].shape[1] == channels
    empty = comfy.nodes.MDiffAEEmptyLatent.execute(vae, 64, 32, 2).args[0]["samples"]
    assert empty.shape == (2, channels, 2, 4)
    out = comfy.nodes.MDiffAEDecode.execute(latent, vae, 2, 1.5, 1, "dpmpp_2m", "cosine", 0.8).args[0]
    assert out.shape == (1, 32, 48, 3)


def test_decode_node_passes_sampler_schedule_and_strength_to_the_model(comfy):
    vae = load_vae(comfy)
    z = vae.encode(torch.rand(1, 32, 32, 3))
    inner = vae.first_stage_model.vae
    for sampler, schedule, strength in [("ddim", "linear", 1.0), ("dpmpp_2m", "cosine", 0.7), ("ddim", "cosine", 0.5)]:
        got = comfy.nodes.MDiffAEDecode.execute({"samples": z}, vae, 3, 1.1, 5, sampler, schedule, strength).args[0]
        with torch.no_grad():
            ref = inner.decode(
                z,
                num_inference_steps=3,
                pdg_strength=1.1,
                seed=5,
                sampler=sampler,
                schedule=schedule,
                strength=strength,
            ).sample
        assert torch.allclose(got, ((ref.float() + 1) / 2).clamp(0, 1).movedim(1, -1), atol=1e-6), (sampler, schedule)
    a = comfy.nodes.MDiffAEDecode.execute({"samples": z}, vae, 3, 1.0, 5, "ddim").args[0]
    b = comfy.nodes.MDiffAEDecode.execute({"samples": z}, vae, 3, 1.0, 5, "dpmpp_2m").args[0]
    assert not torch.equal(a, b)


# -- inputs are checked before work starts ---------------------------------------------------------


@pytest.mark.parametrize(
    "node, values, words",
    [
        (
            "MDiffAELoader",
            {"dtype": "fixed"},
            ["dtype 'fixed' is not one of its choices", "'auto'", "'float32'", "'bfloat16'", "'float16'"],
        ),
        (
            "MDiffAELoader",
            {"checkpoint": "mdiffae/missing.safetensors"},
            ["checkpoint 'mdiffae/missing.safetensors' is not one of its choices", "'(bundled demo checkpoint)'"],
        ),
        ("MDiffAELoader", {"steps": 0}, ["steps must be a whole number from 1 to 100, got 0"]),
        ("MDiffAELoader", {"seed": -1}, ["seed must be a whole number from 0 to 18446744073709551615, got -1"]),
        ("MDiffAELoader", {"pdg_strength": float("nan")}, ["pdg_strength must be a number from 0 to 5, got nan"]),
        ("MDiffAEDecode", {"sampler": "euler"}, ["sampler 'euler' is not one of its choices: 'ddim', 'dpmpp_2m'"]),
        ("MDiffAEDecode", {"schedule": "karras"}, ["schedule 'karras' is not one of its choices: 'linear', 'cosine'"]),
        ("MDiffAEDecode", {"strength": 0.0}, ["strength must be a number from 0.01 to 1, got 0.0"]),
        ("MDiffAEDecode", {"pdg_strength": 6}, ["pdg_strength must be a number from 0 to 5, got 6"]),
        ("MDiffAEDecode", {"seed": -1}, ["seed must be a whole number from 0 to 18446744073709551615, got -1"]),
        (
            "MDiffAEDecode",
            {"steps": 2.5, "sampler": "x"},
            ["steps must be a whole number from 1 to 100, got 2.5", "sampler 'x' is not one of its choices"],
        ),
        ("MDiffAELatentPreview", {"upscale": 65}, ["upscale must be a whole number from 1 to 64, got 65"]),
        ("MDiffAEEmptyLatent", {"width": 8}, ["width must be a whole number from 16 to 16384, got 8"]),
        ("MDiffAEEmptyLatent", {"height": 8}, ["height must be a whole number from 16 to 16384, got 8"]),
        ("MDiffAEEmptyLatent", {"batch_size": 0}, ["batch_size must be a whole number from 1 to 4096, got 0"]),
    ],
)
def test_a_bad_value_is_refused_with_a_sentence_before_and_at_run_time(comfy, node, values, words):
    cls = getattr(comfy.nodes, node)
    message = cls.validate_inputs(**values)
    assert isinstance(message, str) and message.endswith(".")
    for w in words:
        assert w in message
    # defence in depth: execute refuses it too, with the same sentence and never a KeyError
    good = {
        "MDiffAELoader": {
            "checkpoint": "mdiffae/tiny/diffusion_pytorch_model.safetensors",
            "steps": 1,
            "pdg_strength": 1.0,
            "seed": 0,
            "dtype": "auto",
        },
        "MDiffAEDecode": {
            "samples": {"samples": torch.zeros(1, 64, 1, 1)},
            "vae": None,
            "steps": 1,
            "pdg_strength": 1.0,
            "seed": 0,
            "sampler": "ddim",
            "schedule": "linear",
            "strength": 1.0,
        },
        "MDiffAELatentPreview": {"samples": {"samples": torch.zeros(1, 64, 1, 1)}, "upscale": 1},
        "MDiffAEEmptyLatent": {"vae": None, "width": 16, "height": 16, "batch_size": 1},
    }[node]
    with pytest.raises(ValueError) as e:
        cls.execute(**{**good, **values})
    assert str(e.value) == message


def test_good_and_linked_values_pass_validation(comfy):
    nodes = comfy.nodes
    assert (
        nodes.MDiffAELoader.validate_inputs(
            checkpoint="(bundled demo checkpoint)", steps=100, pdg_strength=5, seed=2**64 - 1, dtype="bfloat16"
        )
        is True
    )
    assert (
        nodes.MDiffAEDecode.validate_inputs(
            steps=1, pdg_strength=0.0, seed=0, sampler="dpmpp_2m", schedule="cosine", strength=0.01
        )
        is True
    )
    # a linked input (e.g. a seed from a primitive node) arrives as None: nothing to check yet
    assert nodes.MDiffAEDecode.validate_inputs(steps=None, seed=None, sampler=None) is True
    assert nodes.MDiffAEEmptyLatent.validate_inputs(width=512, height=512, batch_size=1) is True


def test_validate_inputs_names_the_inputs_comfyui_passes(comfy):
    """ComfyUI 0.3.64 passes a V3 node's validate_inputs only the inputs its signature names (and then
    skips its own min/max checks for them): every widget input must be named there."""
    import inspect

    for node in comfy.nodes.NODES:
        if "validate_inputs" not in node.__dict__:
            continue
        params = set(inspect.signature(node.validate_inputs).parameters)
        widgets = {s.name for s in comfy.nodes.widget_specs(node)}
        assert widgets <= params, (node.__name__, widgets - params)
        assert all(inspect.signature(node.validate_inputs).parameters[p].default is None for p in params)


def test_every_node_with_widgets_validates(comfy):
    for node in comfy.nodes.NODES:
        if comfy.nodes.widget_specs(node):
            assert "validate_inputs" in node.__dict__, node.__name__


def test_check_values_messages():
    from diffusers_mdiffae.comfy_bridge import InputSpec, check_values

    specs = [
        InputSpec("mode", "COMBO", options=("a", "b")),
        InputSpec("n", "INT", min=1, max=3),
        InputSpec("x", "FLOAT", min=0.5),
        InputSpec("files", "COMBO", options=()),
    ]
    assert check_values(specs, {"mode": "a", "n": 2, "x": 9.0}) is None
    assert check_values(specs, {"mode": "c"}) == "mode 'c' is not one of its choices: 'a', 'b'."
    assert check_values(specs, {"n": True}) == "n must be a whole number from 1 to 3, got True."
    assert check_values(specs, {"x": "1"}) == "x must be a number of at least 0.5, got '1'."
    assert "has no choices here" in check_values(specs, {"files": "f.safetensors"})
    many = [InputSpec("ckpt", "COMBO", options=tuple(f"f{i}" for i in range(30)))]
    assert check_values(many, {"ckpt": "zz"}).endswith("'f11', ... (30 in all).")


# -- workflows -------------------------------------------------------------------------------------


def test_workflows_are_current_and_derived_from_the_node_definitions():
    bw = build_workflows()
    for name, build in bw.WORKFLOWS.items():
        on_disk = json.loads((ROOT / "workflows" / name).read_text())
        assert on_disk == json.loads(json.dumps(build())), f"{name} is stale: run workflows/build_workflows.py"
        ids = {n["id"] for n in on_disk["nodes"]}
        for link_id, src, _, dst, _, _ in on_disk["links"]:
            assert src in ids and dst in ids
        for node in on_disk["nodes"]:
            spec = bw.node_spec(node["type"])
            values = node["widgets_values"]
            assert len(values) == len(spec.widgets) + sum(1 for w in spec.widgets if w.extra), (name, node["type"])
            i = 0
            for w in spec.widgets:  # each value where the frontend will put it; companions after their widget
                value = values[i]
                if w.options is not None and (node["type"], w.name) not in bw.FILE_COMBOS:
                    assert value in w.options, (name, node["type"], w.name, value)
                if w.kind == "INT":
                    assert isinstance(value, int) and not isinstance(value, bool), (name, node["type"], w.name)
                i += 1
                if w.extra:
                    assert values[i] == bw.EXTRA_VALUES[w.extra]
                    i += 1
            if node["type"] == "LoadImage":
                assert values[0] == "example.png"  # shipped in every ComfyUI's input/


def test_pack_node_definitions_follow_the_frontend_rules():
    bw = build_workflows()
    loader = list(bw.node_spec("MDiffAELoader").widgets)
    assert [(w.name, w.extra) for w in loader] == [
        ("checkpoint", None),
        ("steps", None),
        ("pdg_strength", None),
        ("seed", None),
        ("dtype", None),
    ]
    decode = bw.node_spec("MDiffAEDecode")
    assert [(w.name, w.extra) for w in decode.widgets] == [
        ("steps", None),
        ("pdg_strength", None),
        ("seed", "control"),
        ("sampler", None),
        ("schedule", None),
        ("strength", None),
    ]
    assert decode.inputs == (("samples", "LATENT"), ("vae", "VAE")) and decode.outputs == (("IMAGE", "IMAGE"),)
    assert bw.widgets_values("MDiffAEDecode", steps=4, sampler="dpmpp_2m") == [
        4,
        1.0,
        0,
        "fixed",
        "dpmpp_2m",
        "linear",
        1.0,
    ]
    assert bw.widgets_values("LoadImage", image="example.png") == ["example.png", "image"]
    with pytest.raises(KeyError, match="no widget"):
        bw.widgets_values("MDiffAEDecode", control_after_generate="fixed")
    with pytest.raises(ValueError, match="not one of"):
        bw.widgets_values("MDiffAELoader", dtype="fixed")
    with pytest.raises(ValueError, match="outside"):
        bw.widgets_values("MDiffAEDecode", strength=2.0)


def test_object_info_rules_match_the_frontend():
    bw = build_workflows()
    info = {
        "input": {
            "required": {
                "image": [["a.png", "b.png"], {"image_upload": True}],
                "seed": ["INT", {"default": 0, "min": 0, "max": 10}],
                "noise_seed": ["INT", {"default": 1, "control_after_generate": False}],
                "count": ["INT", {"default": 2, "control_after_generate": True}],
                "mode": ["COMBO", {"options": ["x", "y"]}],
                "pixels": ["IMAGE", {}],
                "linked": ["FLOAT", {"forceInput": True}],
            },
            "optional": {"note": ["STRING", {"default": "hi"}]},
            "hidden": {"prompt": "PROMPT"},
        },
        "input_order": {
            "required": ["image", "seed", "noise_seed", "count", "mode", "pixels", "linked"],
            "optional": ["note"],
        },
    }
    W = bw.Widget
    assert bw.widgets_from_object_info(info) == (
        W("image", "COMBO", "a.png", ("a.png", "b.png"), extra="upload"),
        W("seed", "INT", 0, None, 0, 10, "control"),
        W("noise_seed", "INT", 1),
        W("count", "INT", 2, extra="control"),
        W("mode", "COMBO", "x", ("x", "y")),
        W("note", "STRING", "hi"),
    )


def test_graphs_leave_room_under_every_node():
    """No two nodes overlap, title bar and the badge row above it (source pack, [BETA]) included; image
    nodes have room for the picture under their widgets."""
    bw = build_workflows()
    for name, build in bw.WORKFLOWS.items():
        boxes = [
            (n["pos"][0], n["pos"][1] - 30 - 22, n["pos"][0] + n["size"][0], n["pos"][1] + n["size"][1], n)
            for n in build()["nodes"]
        ]
        for i, a in enumerate(boxes):
            for b in boxes[i + 1 :]:
                overlap = a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]
                assert not overlap, (name, a[4]["type"], b[4]["type"])
            if a[4]["type"] in bw.IMAGE_NODES:
                assert a[4]["size"][1] >= bw.WIDTH + 60


def test_two_bad_values_make_one_message_of_their_sentences_joined_by_semicolons(comfy):
    assert comfy.nodes.MDiffAEDecode.validate_inputs(steps=2.5, sampler="x") == (
        "steps must be a whole number from 1 to 100, got 2.5; sampler 'x' is not one of its choices: "
        "'ddim', 'dpmpp_2m'."
    )
