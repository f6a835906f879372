"""Opt-in: run every workflow in workflows/ in a real ComfyUI (skipped unless COMFYUI_DIR is set).

    COMFYUI_DIR=/path/to/ComfyUI [COMFYUI_PYTHON=/path/to/its/venv/bin/python] python -m pytest tests/test_comfyui_real.py

(COMFYUI_PYTHON defaults to ``venv/bin/python`` next to COMFYUI_DIR.) Starts ``main.py --cpu`` through
``fixtures.comfyui_server`` on a free loopback port with a throw-away base directory in which this
repository is linked as a custom node and the sample photo is the input image, posts each workflow
(converted to the API format), and checks the saved images. Bad inputs must come back as node
errors that name the problem.
"""

import json
import shutil
import sys
import time

import pytest

from fixtures.comfyui_server import ROOT, comfyui_server, comfyui_skip_reason

pytestmark = [pytest.mark.comfyui, pytest.mark.slow,
              pytest.mark.skipif(comfyui_skip_reason() is not None, reason=str(comfyui_skip_reason()))]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    base = tmp_path_factory.mktemp("comfy_base")
    (base / "input").mkdir()
    shutil.copy(ROOT / "diffusers_mdiffae" / "assets" / "astronaut_256.png", base / "input" / "astronaut_256.png")
    from PIL import Image

    Image.new("RGB", (100, 70), (120, 60, 30)).save(base / "input" / "odd_100x70.png")
    import torch
    from safetensors.torch import save_file

    (base / "models" / "vae").mkdir(parents=True)
    save_file({"decoder.conv_in.weight": torch.zeros(4, 4, 3, 3)}, base / "models" / "vae" / "sd_vae.safetensors")
    with comfyui_server(base) as comfy:
        yield comfy


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


def workflows():
    sys.path.insert(0, str(ROOT / "workflows"))
    try:
        import build_workflows
    finally:
        sys.path.remove(str(ROOT / "workflows"))
    return build_workflows


@pytest.mark.parametrize("name, size, count", [
    ("mdiffae_roundtrip_stock_nodes.json", (256, 256), 1),
    ("mdiffae_decode_steps_pdg.json", (256, 256), 5),
    ("mdiffae_tiled_highres.json", (1024, 1024), 1),
])
def test_workflow_runs(server, name, size, count):
    from PIL import Image

    bw = workflows()
    entry = run_prompt(server, bw.to_api(json.loads((ROOT / "workflows" / name).read_text())))
    assert entry.get("status", {}).get("status_str") == "success", json.dumps(entry)[:3000]
    files = server.output_files(entry)
    assert len(files) == count
    for f in files:
        assert Image.open(f).size == size


def test_bad_image_size_is_a_clear_node_error(server):
    bw = workflows()
    entry = run_prompt(server, with_input(bw.to_api(bw.steps_and_pdg()), "LoadImage", "image", "odd_100x70.png"))
    messages = json.dumps(entry.get("status", {}).get("messages", []))
    assert "multiples of 16" in messages and "100x70" in messages


def test_wrong_checkpoint_kind_is_a_clear_node_error(server):
    bw = workflows()
    prompt = with_input(bw.to_api(bw.roundtrip_stock()), "MDiffAELoader", "checkpoint", "vae/sd_vae.safetensors")
    entry = run_prompt(server, prompt)
    text = json.dumps(entry)
    assert "sd_vae.safetensors is not an mDiffAE checkpoint" in text


def test_interrupt_stops_a_multi_step_decode_within_a_step(server):
    import threading

    bw = workflows()
    prompt = bw.to_api(bw.steps_and_pdg())
    # one decoder, many steps at 1024x1024, so the decode takes far longer than a step
    keep = {k for k, n in prompt.items() if n["class_type"] in ("LoadImage", "MDiffAELoader", "MDiffAEEncode")}
    decoders = [k for k, n in prompt.items() if n["class_type"] == "MDiffAEDecode"]
    prompt = {k: v for k, v in prompt.items() if k in keep or k == decoders[0]}
    prompt["90"] = {"class_type": "ImageScale", "inputs": {"image": [next(k for k in keep if prompt[k]["class_type"] == "LoadImage"), 0],
                                                           "upscale_method": "bicubic", "width": 1024, "height": 1024,
                                                           "crop": "disabled"}}
    enc = next(k for k in keep if prompt[k]["class_type"] == "MDiffAEEncode")
    prompt[enc]["inputs"]["pixels"] = ["90", 0]
    prompt[decoders[0]]["inputs"]["steps"] = 100
    prompt["91"] = {"class_type": "SaveImage", "inputs": {"images": [decoders[0], 0], "filename_prefix": "interrupted"}}
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
