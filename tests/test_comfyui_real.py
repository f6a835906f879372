"""Opt-in: run every workflow in workflows/ in a real ComfyUI (skipped unless COMFYUI_DIR is set).

    COMFYUI_DIR=/path/to/ComfyUI [COMFYUI_PYTHON=/path/to/its/venv/bin/python] python -m pytest tests/test_comfyui_real.py

Starts ``main.py --cpu`` on a free loopback port with a throw-away base directory in which this
repository is linked as a custom node and the sample photo is the input image, posts each workflow
(converted to the API format), and checks the saved images. Bad inputs must come back as node
errors that name the problem.
"""

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
COMFYUI_DIR = os.environ.get("COMFYUI_DIR")
pytestmark = pytest.mark.skipif(not COMFYUI_DIR or not (Path(COMFYUI_DIR) / "main.py").is_file(),
                                reason="set COMFYUI_DIR to a ComfyUI checkout to run the real-ComfyUI tests")


def _python() -> str:
    if os.environ.get("COMFYUI_PYTHON"):
        return os.environ["COMFYUI_PYTHON"]
    venv = Path(COMFYUI_DIR).parent / "venv" / "bin" / "python"
    return str(venv) if venv.is_file() else sys.executable


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _call(url, payload=None, timeout=30):
    data = None if payload is None else json.dumps(payload).encode()
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    base = tmp_path_factory.mktemp("comfy_base")
    (base / "custom_nodes").mkdir()
    (base / "custom_nodes" / "diffusers-mdiffae").symlink_to(ROOT)
    (base / "input").mkdir()
    shutil.copy(ROOT / "diffusers_mdiffae" / "assets" / "astronaut_256.png", base / "input" / "astronaut_256.png")
    from PIL import Image

    Image.new("RGB", (100, 70), (120, 60, 30)).save(base / "input" / "odd_100x70.png")
    import torch
    from safetensors.torch import save_file

    (base / "models" / "vae").mkdir(parents=True)
    save_file({"decoder.conv_in.weight": torch.zeros(4, 4, 3, 3)}, base / "models" / "vae" / "sd_vae.safetensors")
    port = _free_port()
    log = open(base / "server.log", "w")
    proc = subprocess.Popen(
        [_python(), "main.py", "--cpu", "--listen", "127.0.0.1", "--port", str(port), "--disable-auto-launch",
         "--base-directory", str(base), "--database-url", f"sqlite:///{base / 'db.sqlite'}"],
        cwd=COMFYUI_DIR, stdout=log, stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(240):
            if proc.poll() is not None:
                pytest.fail("ComfyUI exited at start:\n" + (base / "server.log").read_text()[-3000:])
            try:
                if _call(url + "/system_stats", timeout=2)[0] == 200:
                    break
            except OSError:
                pass
            time.sleep(0.5)
        else:
            pytest.fail("ComfyUI did not start in 120 s")
        yield url, base
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def run_prompt(url, prompt, timeout=600):
    status, body = _call(url + "/prompt", {"prompt": prompt, "client_id": "mdiffae-tests"})
    if status != 200:
        return {"node_errors": body}
    pid = body["prompt_id"]
    deadline = time.time() + timeout
    while time.time() < deadline:
        _, hist = _call(f"{url}/history/{pid}")
        if hist and pid in hist and hist[pid].get("status", {}).get("completed") is not None:
            entry = hist[pid]
            if entry["status"].get("status_str") == "success" or entry.get("outputs"):
                return entry
            if entry["status"].get("status_str") == "error":
                return entry
        time.sleep(0.5)
    _call(url + "/interrupt", {})
    pytest.fail("workflow timed out")


def saved_images(base, entry):
    files = []
    for out in entry.get("outputs", {}).values():
        for img in out.get("images", []):
            files.append(base / img.get("type", "output") / img.get("subfolder", "") / img["filename"])
    return files


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

    url, base = server
    bw = workflows()
    entry = run_prompt(url, bw.to_api(json.loads((ROOT / "workflows" / name).read_text())))
    assert entry.get("status", {}).get("status_str") == "success", json.dumps(entry)[:3000]
    files = saved_images(base, entry)
    assert len(files) == count
    for f in files:
        assert Image.open(f).size == size


def test_bad_image_size_is_a_clear_node_error(server):
    url, base = server
    bw = workflows()
    entry = run_prompt(url, with_input(bw.to_api(bw.steps_and_pdg()), "LoadImage", "image", "odd_100x70.png"))
    messages = json.dumps(entry.get("status", {}).get("messages", []))
    assert "multiples of 16" in messages and "100x70" in messages


def test_wrong_checkpoint_kind_is_a_clear_node_error(server):
    url, base = server
    bw = workflows()
    prompt = with_input(bw.to_api(bw.roundtrip_stock()), "MDiffAELoader", "checkpoint", "vae/sd_vae.safetensors")
    entry = run_prompt(url, prompt)
    text = json.dumps(entry)
    assert "sd_vae.safetensors is not an mDiffAE checkpoint" in text


def test_interrupt_stops_a_multi_step_decode_within_a_step(server):
    import threading

    url, base = server
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
    timer = threading.Timer(3.0, lambda: _call(url + "/interrupt", {}))
    timer.start()
    t0 = time.time()
    entry = run_prompt(url, prompt)
    elapsed = time.time() - t0
    timer.cancel()
    events = [m[0] for m in entry.get("status", {}).get("messages", [])]
    assert "execution_interrupted" in events, events
    assert not saved_images(base, entry)
    assert elapsed < 30, elapsed
