"""The ComfyUI node pack against small stand-ins for ComfyUI (no ComfyUI needed)."""

import asyncio
import importlib
import importlib.util
import json
import sys
from pathlib import Path

import pytest
import torch

from fixtures.models import make_tiny
from fixtures import fake_comfy

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def comfy(tmp_path):
    state = fake_comfy.install(tmp_path / "models", batch_chunk=1)
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    nodes = importlib.import_module("comfyui_nodes.nodes")
    state.nodes = nodes
    (tmp_path / "models" / "mdiffae").mkdir(parents=True)
    make_tiny().save_pretrained(tmp_path / "models" / "mdiffae" / "tiny")
    yield state
    fake_comfy.uninstall(state)


def load_vae(comfy, steps=1, pdg=1.0, seed=0, checkpoint="mdiffae/tiny/diffusion_pytorch_model.safetensors"):
    return comfy.nodes.MDiffAELoader.execute(checkpoint, steps, pdg, seed, "auto").args[0]


def test_library_import_does_not_import_comfyui():
    import subprocess

    code = "import sys, diffusers_mdiffae, diffusers_mdiffae.comfy_bridge; print(any(m.startswith('comfy') and m != 'comfy_bridge' for m in sys.modules if not m.startswith('diffusers_mdiffae')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "False"


def test_schemas_are_prefixed_and_typed(comfy):
    schemas = {n.define_schema().node_id: n.define_schema() for n in comfy.nodes.NODES}
    assert set(schemas) == {"MDiffAELoader", "MDiffAEEncode", "MDiffAEDecode", "MDiffAELatentPreview", "MDiffAEEmptyLatent"}
    loader = schemas["MDiffAELoader"]
    assert [i.id for i in loader.inputs] == ["checkpoint", "steps", "pdg_strength", "seed", "dtype"]
    assert "mdiffae/tiny/diffusion_pytorch_model.safetensors" in loader.inputs[0].kwargs["options"]
    assert [o.io_type for o in loader.outputs] == ["VAE"]
    decode = schemas["MDiffAEDecode"]
    seed = decode.inputs[-1]
    assert seed.id == "seed" and seed.kwargs["control_after_generate"] is True
    assert [o.io_type for o in decode.outputs] == ["IMAGE"]


def test_entrypoint_lists_the_nodes(comfy):
    ext = asyncio.run(comfy.nodes.comfy_entrypoint())
    assert len(asyncio.run(ext.get_node_list())) == 5


def test_repository_root_is_a_loadable_custom_node_package(comfy):
    spec = importlib.util.spec_from_file_location("custom_nodes_mdiffae", ROOT / "__init__.py",
                                                  submodule_search_locations=[str(ROOT)])
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
    assert vae.disable_offload is True and vae.crop_input is True
    module = vae.first_stage_model
    assert (module.default_steps, module.default_pdg_strength, module.default_seed) == (3, 1.1, 5)
    assert vae.memory_used_decode((1, 64, 32, 32), torch.float32) > vae.memory_used_decode((1, 64, 16, 16), torch.float32)
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
    with pytest.raises(ValueError, match="sd_vae.safetensors is not an mDiffAE checkpoint"):
        load_vae(comfy, checkpoint="vae/sd_vae.safetensors")
    other = vae_dir / "kl"
    other.mkdir()
    (other / "config.json").write_text(json.dumps({"_class_name": "AutoencoderKL"}))
    save_file({"x": torch.zeros(1)}, other / "diffusion_pytorch_model.safetensors")
    with pytest.raises(ValueError, match="describes AutoencoderKL"):
        load_vae(comfy, checkpoint="vae/kl/diffusion_pytorch_model.safetensors")


def test_loader_converts_a_published_snapshot(comfy, tmp_path):
    from safetensors.torch import save_file

    from fixtures.fake_original import to_original_layout
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
    empty = comfy.nodes.MDiffAEEmptyLatent.execute(96, 64, 3).args[0]["samples"]
    assert empty.shape == (3, 64, 4, 6) and not empty.any()


def test_layout_conversions_round_trip():
    from diffusers_mdiffae.comfy_bridge import image_to_model, model_to_image

    image = torch.rand(2, 16, 32, 3)
    x = image_to_model(image)
    assert x.shape == (2, 3, 16, 32) and x.min() >= -1 and x.max() <= 1
    assert torch.allclose(model_to_image(x), image, atol=1e-6)
    with pytest.raises(ValueError, match=r"\[B, H, W, C\]"):
        image_to_model(torch.rand(16, 32, 3))


def test_workflows_are_current_and_use_known_nodes():
    sys.path.insert(0, str(ROOT / "workflows"))
    try:
        import build_workflows
    finally:
        sys.path.remove(str(ROOT / "workflows"))
    known = set(build_workflows.OUTPUTS)
    for name, build in build_workflows.WORKFLOWS.items():
        on_disk = json.loads((ROOT / "workflows" / name).read_text())
        assert on_disk == json.loads(json.dumps(build())), f"{name} is stale: run workflows/build_workflows.py"
        ids = {n["id"] for n in on_disk["nodes"]}
        assert {n["type"] for n in on_disk["nodes"]} <= known
        for link_id, src, _, dst, _, _ in on_disk["links"]:
            assert src in ids and dst in ids
