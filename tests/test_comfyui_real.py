"""Opt-in: the node pack in a real ComfyUI (skipped unless COMFYUI_DIR is set).

    COMFYUI_DIR=/path/to/ComfyUI [COMFYUI_PYTHON=/path/to/its/venv/bin/python] \
        python -m pytest tests/test_comfyui_real.py

(COMFYUI_PYTHON defaults to ``venv/bin/python`` next to COMFYUI_DIR.) Starts ``main.py --cpu`` through
``fixtures.comfyui_server`` on a free loopback port with a throw-away base directory: this repository
linked as a custom node, ComfyUI's own ``example.png`` as the input image, and a tiny random-weight
checkpoint of every family member saved as a single ``.safetensors`` file in ``models/mdiffae``.
Checks that the workflow builder's node tables match the server's ``/object_info``, runs every
workflow in workflows/ and a per-family graph that uses every node, and that bad inputs come back as
node errors that name the problem.

The per-family cases can be written out for ``shared/tools/comfyui_harness.sh`` too:

    python tests/test_comfyui_real.py --write-family-cases DIR
    comfyui_harness.sh --expect-node MDiffAELoader --input ComfyUI/input/example.png \\
        --model mdiffae=DIR/tiny_semdisdiffae.safetensors --require-files . DIR/family_semdisdiffae.json
"""

import json
import shutil
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))  # fixtures, when run as a script

from fixtures.comfyui_server import ROOT, comfyui_dir, comfyui_python, comfyui_server, comfyui_skip_reason  # noqa: E402

pytestmark = [
    pytest.mark.comfyui,
    pytest.mark.slow,
    pytest.mark.skipif(comfyui_skip_reason() is not None, reason=str(comfyui_skip_reason())),
]

FAMILIES = ("mdiffae_v1", "mdiffae_v2", "irdiffae_v1", "semdisdiffae")
LATENT_CHANNELS = {"mdiffae_v1": 64, "mdiffae_v2": 96, "irdiffae_v1": 128, "semdisdiffae": 128}


def workflows():
    sys.path.insert(0, str(ROOT / "workflows"))
    try:
        import build_workflows
    finally:
        sys.path.remove(str(ROOT / "workflows"))
    return build_workflows


def tiny_checkpoint_name(family: str) -> str:
    return f"tiny_{family}.safetensors"


def write_family_cases(folder: Path) -> list:
    """A tiny random-weight single-file checkpoint and a UI-format workflow per family member."""
    from fixtures.models import make_tiny
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    bw = workflows()
    written = []
    for family in FAMILIES:
        model = make_tiny(seed=1, family=family)
        ckpt = folder / tiny_checkpoint_name(family)
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(ckpt))
        flow = folder / f"family_{family}.json"
        flow.write_text(json.dumps(bw.family_check(f"mdiffae/{ckpt.name}", f"family_{family}"), indent=1) + "\n")
        written += [ckpt, flow]
    return written


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    base = tmp_path_factory.mktemp("comfy_base")
    (base / "input").mkdir()
    shutil.copy(comfyui_dir() / "input" / "example.png", base / "input" / "example.png")
    from PIL import Image

    Image.new("RGB", (100, 70), (120, 60, 30)).save(base / "input" / "odd_100x70.png")
    import torch
    from safetensors.torch import save_file

    (base / "models" / "vae").mkdir(parents=True)
    save_file({"decoder.conv_in.weight": torch.zeros(4, 4, 3, 3)}, base / "models" / "vae" / "sd_vae.safetensors")
    from fixtures.models import place_tokenizers

    place_tokenizers(base / "models")  # tiny stand-ins under the workflows' names
    cases = write_family_cases(tmp_path_factory.mktemp("family_cases"))
    (base / "models" / "mdiffae").mkdir(parents=True)
    for f in cases:
        if f.suffix == ".safetensors":
            shutil.copy(f, base / "models" / "mdiffae" / f.name)
    with comfyui_server(base) as comfy:
        yield comfy


@pytest.fixture(scope="module")
def object_info(server):
    status, info = server.get("/object_info")
    assert status == 200
    return info


def run_prompt(comfy, prompt, timeout=600):
    entry = comfy.run_prompt(prompt, timeout)
    if "timeout" in entry:
        pytest.fail("workflow timed out")
    return entry


def with_input(prompt, class_type, name, value):
    """``prompt`` with input ``name`` of every ``class_type`` node set to ``value``."""
    for node in prompt.values():
        if node["class_type"] == class_type:
            node["inputs"][name] = value
    return prompt


# -- the builder's node tables against this ComfyUI ----------------------------------------------------


def _comparable(widgets, node_type, bw):
    """Widgets with the file lists (which depend on what is installed) left out."""
    return [
        bw.Widget(w.name, w.kind, None, None, w.min, w.max, w.extra) if (node_type, w.name) in bw.FILE_COMBOS else w
        for w in widgets
    ]


def _sockets(info):
    kinds = set(workflows().WIDGET_KINDS)
    order = info["input_order"]
    inputs = []
    for category in ("required", "optional"):
        for name in order.get(category, []):
            spec = info["input"][category][name]
            if not isinstance(spec[0], list) and spec[0] not in kinds:
                inputs.append((name, spec[0]))
    return tuple(inputs), tuple(zip(info["output_name"], info["output"]))


@pytest.mark.parametrize("table", ["stock", "pack"])
def test_builder_node_tables_match_object_info(object_info, table):
    bw = workflows()
    specs = bw.STOCK if table == "stock" else bw.pack_specs()
    for node_type, spec in specs.items():
        info = object_info[node_type]
        assert _comparable(bw.widgets_from_object_info(info), node_type, bw) == _comparable(
            spec.widgets, node_type, bw
        ), node_type
        assert _sockets(info) == (spec.inputs, spec.outputs), node_type


# -- workflows ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, size, count",
    [
        ("mdiffae_roundtrip_stock_nodes.json", (768, 768), 1),
        ("mdiffae_decode_steps_pdg.json", (768, 768), 5),
        ("mdiffae_tiled_highres.json", (1024, 1024), 1),
    ],
)
def test_workflow_runs(server, name, size, count):
    from PIL import Image

    bw = workflows()
    entry = run_prompt(server, bw.to_api(json.loads((ROOT / "workflows" / name).read_text())))
    assert entry.get("status", {}).get("status_str") == "success", json.dumps(entry)[:3000]
    files = server.output_files(entry)
    assert len(files) == count
    for f in files:
        assert Image.open(f).size == size


@pytest.mark.parametrize("kind", ["maetok", "softvq", "vmae"])
def test_tokenizer_workflow_runs_through_the_stock_vae_nodes(server, kind):
    from PIL import Image

    bw = workflows()
    flow = json.loads((ROOT / "workflows" / f"tokenizer_{kind}_roundtrip.json").read_text())
    entry = run_prompt(server, bw.to_api(flow))
    assert entry.get("status", {}).get("status_str") == "success", json.dumps(entry)[:3000]
    files = server.output_files(entry)
    assert [Image.open(f).size for f in files] == [(256, 256)]


@pytest.mark.parametrize("kind", ["maetok", "vmae"])
def test_tiled_decode_of_a_tokenizer_is_an_error_naming_the_plain_nodes(server, kind):
    bw = workflows()
    prompt = bw.to_api(json.loads((ROOT / "workflows" / f"tokenizer_{kind}_roundtrip.json").read_text()))
    for node in prompt.values():
        if node["class_type"] == "VAEDecode":
            node["class_type"] = "VAEDecodeTiled"
            node["inputs"].update(tile_size=512, overlap=64, temporal_size=64, temporal_overlap=8)
    entry = run_prompt(server, prompt)
    assert entry.get("status", {}).get("status_str") == "error"
    text = json.dumps(entry)
    assert "cannot encode or decode in tiles" in text and "plain VAE Encode / VAE Decode" in text
    assert not server.output_files(entry)


PARTIAL_LOAD_SCRIPT = r"""
import sys, json
sys.argv = ["main.py", "--cpu"]
sys.path[:0] = [COMFY_DIR, REPO_DIR]
import comfy.options
comfy.options.enable_args_parsing()  # as main.py does, so --cpu is read
import torch
import comfy.model_management, comfy.ops
from comfyui_nodes.vae import MDiffAEVAE
from diffusers_mdiffae import DEMO_MODEL_DIR
from diffusers_mdiffae.comfy_bridge import ComfyMDiffAEModule, load_any

vae = MDiffAEVAE(ComfyMDiffAEModule(load_any(str(DEMO_MODEL_DIR), torch_dtype=torch.float32)), dtype=torch.float32)
z = torch.randn(1, 64, 4, 4, generator=torch.Generator().manual_seed(0))
vae.patcher.load(torch.device("cpu"), full_load=True)
full = vae.first_stage_model.decode(z)
vae.patcher.unpatch_model()
# What --lowvram / --novram do on a GPU: load within a small budget, cast the rest per call.
vae.patcher.load(torch.device("cpu"), lowvram_model_memory=256 * 1024, full_load=False)
cast = [n for n, m in vae.first_stage_model.named_modules() if getattr(m, "comfy_cast_weights", False)]
partial = vae.first_stage_model.decode(z)
print(json.dumps({"cast_layers": len(cast), "max_diff": float((partial - full).abs().max())}))
"""


def test_comfyui_partial_loading_casts_our_layers_and_decodes_the_same(tmp_path):
    """--lowvram / --novram cannot start on a CPU-only machine (ComfyUI refuses them with --cpu and
    needs CUDA without it), so ComfyUI's partial-load path is driven directly: with the VAE's
    layers built from comfy.ops, ModelPatcher casts the ones beyond the budget per call."""
    import subprocess

    script = PARTIAL_LOAD_SCRIPT.replace("COMFY_DIR", repr(str(comfyui_dir()))).replace("REPO_DIR", repr(str(ROOT)))
    res = subprocess.run(
        [str(comfyui_python()), "-c", script], capture_output=True, text=True, cwd=comfyui_dir(), timeout=300
    )
    assert res.returncode == 0, res.stderr[-3000:]
    out = json.loads(res.stdout.strip().splitlines()[-1])
    assert out["cast_layers"] > 10 and out["max_diff"] < 1e-5, out


@pytest.mark.parametrize("family", FAMILIES)
def test_every_node_runs_on_every_family_member(server, family):
    """A single-file tiny checkpoint: loader (family inferred), stock encode/decode, MDiffAE encode,
    decode with every option changed, PCA preview, empty latent shaped by the VAE."""
    from PIL import Image

    bw = workflows()
    prompt = bw.to_api(bw.family_check(f"mdiffae/{tiny_checkpoint_name(family)}", f"family_{family}"))
    entry = run_prompt(server, prompt)
    assert entry.get("status", {}).get("status_str") == "success", json.dumps(entry)[:3000]
    sizes = sorted(Image.open(f).size for f in server.output_files(entry))
    assert sizes == [(128, 96), (128, 96), (768, 768), (768, 768), (768, 768)], sizes


# -- bad inputs -------------------------------------------------------------------------------------------


def test_bad_image_size_is_a_clear_node_error(server):
    bw = workflows()
    entry = run_prompt(server, with_input(bw.to_api(bw.steps_and_pdg()), "LoadImage", "image", "odd_100x70.png"))
    messages = json.dumps(entry.get("status", {}).get("messages", []))
    assert "multiples of 16" in messages and "100x70" in messages


def test_wrong_checkpoint_kind_is_refused_before_the_run(server):
    bw = workflows()
    prompt = with_input(bw.to_api(bw.roundtrip_stock()), "MDiffAELoader", "checkpoint", "vae/sd_vae.safetensors")
    entry = run_prompt(server, prompt)
    assert "node_errors" in entry, "the prompt was accepted"
    text = json.dumps(entry)
    assert "sd_vae.safetensors is not an mDiffAE-family checkpoint" in text and "decoder.conv_in.weight" in text


@pytest.mark.parametrize(
    "class_type, name, value, words",
    [
        ("MDiffAELoader", "dtype", "fixed", ["dtype 'fixed' is not one of its choices", "'bfloat16'"]),
        ("MDiffAEDecode", "sampler", "euler", ["sampler 'euler' is not one of its choices: 'ddim', 'dpmpp_2m'"]),
        ("MDiffAEDecode", "schedule", "karras", ["schedule 'karras' is not one of its choices: 'linear', 'cosine'"]),
        ("MDiffAEDecode", "strength", 1.5, ["strength must be a number from 0.01 to 1, got 1.5"]),
        ("MDiffAEDecode", "steps", 0, ["steps must be a whole number from 1 to 100, got 0"]),
    ],
)
def test_bad_widget_values_are_node_errors_before_the_run(server, class_type, name, value, words):
    bw = workflows()
    entry = run_prompt(server, with_input(bw.to_api(bw.steps_and_pdg()), class_type, name, value))
    # A bad loader blocks every output: the prompt is refused. A bad decoder blocks its own output only:
    # ComfyUI runs the others and answers with the node errors (shown on the node by the frontend).
    errors = entry.get("node_errors") or entry.get("dropped_node_errors")
    assert errors, "the value was accepted"
    text = json.dumps(errors)
    assert "KeyError" not in text
    for w in words:
        assert w in text, text[:2000]


def test_interrupt_stops_a_multi_step_decode_within_a_step(server):
    import threading

    bw = workflows()
    prompt = bw.to_api(bw.steps_and_pdg())
    # one decoder, many steps at 1024x1024, so the decode takes far longer than a step
    keep = {k for k, n in prompt.items() if n["class_type"] in ("LoadImage", "MDiffAELoader", "MDiffAEEncode")}
    decoders = [k for k, n in prompt.items() if n["class_type"] == "MDiffAEDecode"]
    prompt = {k: v for k, v in prompt.items() if k in keep or k == decoders[0]}
    image = next(k for k in keep if prompt[k]["class_type"] == "LoadImage")
    prompt["90"] = {
        "class_type": "ImageScale",
        "inputs": {
            "image": [image, 0],
            "upscale_method": "bicubic",
            "width": 1024,
            "height": 1024,
            "crop": "disabled",
        },
    }
    enc = next(k for k in keep if prompt[k]["class_type"] == "MDiffAEEncode")
    prompt[enc]["inputs"]["pixels"] = ["90", 0]
    prompt[decoders[0]]["inputs"]["steps"] = 100
    prompt["91"] = {
        "class_type": "SaveImage",
        "inputs": {"images": [decoders[0], 0], "filename_prefix": "interrupted"},
    }
    timer = threading.Timer(3.0, lambda: server.post("/interrupt", {}))
    timer.start()
    t0 = time.time()
    entry = run_prompt(server, prompt)
    elapsed = time.time() - t0
    timer.cancel()
    events = [m[0] for m in entry.get("status", {}).get("messages", [])]
    assert "execution_interrupted" in events, events
    assert not server.output_files(entry)
    assert elapsed < 30, elapsed


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] != "--write-family-cases":
        sys.exit("usage: python tests/test_comfyui_real.py --write-family-cases DIR")
    for path in write_family_cases(Path(sys.argv[2])):
        print(path)
