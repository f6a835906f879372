"""comfyui_nodes.nodes pinned (against the stand-in ComfyUI): each widget's default as the user first
sees it, the dtype a loader reads and runs the model in, and seeds past 2**63 wrapping onto the same
noise the decoder draws for their remainder."""

import pytest
import torch
from fixtures import fake_comfy
from fixtures.models import make_tiny, place_tokenizers

import diffusers_mdiffae

TINY = "mdiffae/tiny/diffusion_pytorch_model.safetensors"
DTYPES = {"auto": torch.float32, "float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    make_tiny().save_pretrained(root / "mdiffae" / "tiny")
    place_tokenizers(root)
    return root


def _install(models_dir):
    state = fake_comfy.install(models_dir, batch_chunk=1)
    state.nodes = fake_comfy.import_node_module("nodes")
    return state


@pytest.fixture
def comfy(models):
    state = _install(models)
    yield state
    fake_comfy.uninstall(state)


@pytest.fixture
def empty_comfy(tmp_path):
    """The nodes installed over a models folder that holds no checkpoint or tokenizer."""
    state = _install(tmp_path / "models")
    yield state
    fake_comfy.uninstall(state)


def _defaults(node):
    return {i.id: i.default for i in node.define_schema().inputs}


# -- what each widget shows before the user touches it -----------------------------------------------


def test_every_widget_starts_at_its_documented_default(comfy):
    nodes = comfy.nodes
    loader = _defaults(nodes.MDiffAELoader)
    assert loader == {
        "checkpoint": nodes.DEMO_CHOICE,  # the first choice: the bundled demo, listed before any file
        "steps": 1,
        "pdg_strength": 1.0,
        "seed": 0,
        "dtype": "auto",
    }
    assert nodes.MDiffAELoader.define_schema().inputs[0].options[:2] == [nodes.DEMO_CHOICE, TINY]
    assert _defaults(nodes.MDiffAEDecode) == {
        "samples": None,
        "vae": None,
        "steps": 1,
        "pdg_strength": 1.0,
        "seed": 0,
        "sampler": "ddim",
        "schedule": "linear",
        "strength": 1.0,
    }
    assert _defaults(nodes.MDiffAEEmptyLatent) == {"vae": None, "width": 512, "height": 512, "batch_size": 1}
    assert _defaults(nodes.MDiffAELatentPreview) == {"samples": None, "upscale": 16}


def test_the_tokenizer_loader_starts_at_the_first_file_found_auto_kind_and_auto_dtype(comfy):
    schema = comfy.nodes.MDiffAETokenizerLoader.define_schema()
    files = schema.inputs[0].options
    assert files == [  # every weights file, sorted; a folder's weights and its model.safetensors link both
        "maetok-b-128/diffusion_pytorch_model.safetensors",
        "maetok-b-128/model.safetensors",
        "softvq-bl-64/diffusion_pytorch_model.safetensors",
        "softvq-bl-64/model.safetensors",
        "vmaef8d16.pth",
    ]
    assert _defaults(comfy.nodes.MDiffAETokenizerLoader) == {"checkpoint": files[0], "kind": "auto", "dtype": "auto"}
    assert schema.inputs[1].options == ["auto", "maetok", "softvq", "vmae"]
    assert schema.inputs[2].options == ["auto", "float32", "bfloat16", "float16"]


def test_with_no_tokenizer_files_the_checkpoint_has_no_default(empty_comfy):
    checkpoint = empty_comfy.nodes.MDiffAETokenizerLoader.define_schema().inputs[0]
    assert (checkpoint.options, checkpoint.default) == ([], None)


def test_without_the_bundled_demo_the_loader_lists_only_the_files_and_starts_at_the_first(
    comfy, monkeypatch, tmp_path
):
    # the demo is offered only when its config.json is there (a package installed without its assets has none)
    monkeypatch.setattr(diffusers_mdiffae, "DEMO_MODEL_DIR", tmp_path / "demo_model")
    assert comfy.nodes.checkpoint_choices() == [TINY]
    checkpoint = comfy.nodes.MDiffAELoader.define_schema().inputs[0]
    assert (checkpoint.options, checkpoint.default) == ([TINY], TINY)


def test_without_the_demo_or_any_file_the_loader_checkpoint_has_no_default(empty_comfy, monkeypatch, tmp_path):
    monkeypatch.setattr(diffusers_mdiffae, "DEMO_MODEL_DIR", tmp_path / "demo_model")
    checkpoint = empty_comfy.nodes.MDiffAELoader.define_schema().inputs[0]
    assert (checkpoint.options, checkpoint.default) == ([], None)


def test_empty_latent_sizes_step_by_sixteen_within_their_bounds(comfy):
    inputs = {i.id: i for i in comfy.nodes.MDiffAEEmptyLatent.define_schema().inputs}
    assert [(inputs[k].min, inputs[k].max, inputs[k].step) for k in ("width", "height")] == [(16, 16384, 16)] * 2
    assert (inputs["batch_size"].min, inputs["batch_size"].max) == (1, 4096)


# -- the dtype a loader reads the weights in and runs in ---------------------------------------------


@pytest.mark.parametrize("dtype", list(DTYPES))
def test_the_mdiffae_loader_reads_and_runs_the_model_in_the_chosen_dtype(comfy, monkeypatch, dtype):
    read = []
    load_any = comfy.nodes.load_any
    monkeypatch.setattr(
        comfy.nodes, "load_any", lambda path, torch_dtype=None: read.append(torch_dtype) or load_any(path, torch_dtype)
    )
    vae = comfy.nodes.MDiffAELoader.execute(TINY, 1, 1.0, 0, dtype).args[0]
    # read straight in the chosen precision (auto: float32, which ComfyUI's choice is cast from), so a
    # half-precision model never has a float32 copy in memory first
    assert read == [DTYPES[dtype]]
    assert vae.vae_dtype == DTYPES[dtype]  # the stand-in's ComfyUI chooses float32 for "auto"
    assert {p.dtype for p in vae.first_stage_model.parameters()} == {DTYPES[dtype]}


@pytest.mark.parametrize("dtype", list(DTYPES))
def test_the_tokenizer_loader_reads_and_runs_the_model_in_the_chosen_dtype(comfy, monkeypatch, dtype):
    read = []
    load_tokenizer = comfy.nodes.load_tokenizer
    monkeypatch.setattr(
        comfy.nodes,
        "load_tokenizer",
        lambda path, kind, torch_dtype=None: read.append(torch_dtype) or load_tokenizer(path, kind, torch_dtype),
    )
    vae = comfy.nodes.MDiffAETokenizerLoader.execute("vmaef8d16.pth", "auto", dtype).args[0]
    assert read == [DTYPES[dtype]]
    assert vae.vae_dtype == DTYPES[dtype]
    assert {p.dtype for p in vae.first_stage_model.parameters()} == {DTYPES[dtype]}


# -- seeds past 2**63 ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "seed, kept", [(7, 7), (2**63 - 1, 2**63 - 1), (2**63, 0), (2**63 + 5, 5), (2**64 - 1, 2**63 - 1)]
)
def test_the_loaders_seed_wraps_at_two_to_the_63(comfy, seed, kept):
    vae = comfy.nodes.MDiffAELoader.execute(TINY, 1, 1.0, seed, "auto").args[0]
    assert vae.first_stage_model.default_seed == kept


def test_a_decode_seed_past_two_to_the_63_draws_the_noise_of_its_remainder(comfy):
    vae = comfy.nodes.MDiffAELoader.execute(TINY, 1, 1.0, 0, "auto").args[0]
    z = torch.randn(1, 64, 2, 2, generator=torch.Generator().manual_seed(1))
    decode = comfy.nodes.MDiffAEDecode.execute
    five = decode({"samples": z}, vae, 2, 1.0, 5).args[0]
    assert torch.equal(decode({"samples": z}, vae, 2, 1.0, 2**63 + 5).args[0], five)
    assert not torch.equal(decode({"samples": z}, vae, 2, 1.0, 6).args[0], five)
    stored = comfy.nodes.MDiffAELoader.execute(TINY, 2, 1.0, 2**63 + 5, "auto").args[0]
    assert torch.equal(stored.decode(z), five)  # the loader's default seed draws the same noise
