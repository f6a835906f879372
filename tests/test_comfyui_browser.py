"""Opt-in: every workflow in workflows/ opened in the real ComfyUI frontend (headless Chromium) and run.

    COMFYUI_DIR=~/.cache/comfyui-harness/ComfyUI python -m pytest -m comfyui tests/test_comfyui_browser.py -v

Needs a ComfyUI checkout and its Python (``COMFYUI_DIR``, ``COMFYUI_PYTHON`` or ``venv/`` next to the
checkout; see ``fixtures/comfyui_server.py``), and for the browser tests Chromium, its chromedriver
and ``selenium``; whatever is missing skips the tests that need it, with the reason.

The server gets a fresh base directory: this repository linked as ``custom_nodes/diffusers-mdiffae``
and an ``input/`` folder holding only what a fresh ComfyUI install has (its ``example.png``). For each
workflow file the frontend's own ``app.loadGraphData`` opens it; every node type must be registered
and no combo widget may hold a value outside its options (what a wrong ``widgets_values`` order
produces); ``app.graphToPrompt()`` makes the prompt exactly as the Run button does, and it must run;
every SaveImage/PreviewImage must write an image, and each output decoded from the LoadImage image must
reach 20 dB PSNR against it (compared at the input's size: an output the graph scaled is resized back).

Environment:
  MDIFFAE_WORKFLOWS_DIR      folder of UI-format workflows to open (default: workflows/)
  MDIFFAE_BROWSER_ARTIFACTS  where screenshots, produced images and a summary per workflow go
                             (default: a temporary folder, printed at the start); also the README's
                             pictures: <workflow>__readme_graph.jpg (the screenshot after the run,
                             cropped to the graph) and <workflow>__readme_outputs.jpg (input and outputs)
  CHROMIUM, CHROMEDRIVER     browser and driver (default: /usr/bin/chromium, /usr/bin/chromedriver,
                             else found on PATH); the driver is never downloaded
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
from fixtures.comfyui_server import (
    PACK_NAME,
    ROOT,
    comfyui_dir,
    comfyui_server,
    comfyui_skip_reason,
    describe_failure,
    execution_errors,
)

WORKFLOWS_DIR = Path(os.environ.get("MDIFFAE_WORKFLOWS_DIR") or ROOT / "workflows").expanduser()
WORKFLOW_FILES = sorted(WORKFLOWS_DIR.glob("*.json"))
OUTPUT_NODES = ("SaveImage", "PreviewImage")
MIN_ROUND_TRIP_PSNR = 20.0
# Workflows run here on tiny random-weight stand-ins (no published weights offline): their PSNR is
# recorded, not required.
RANDOM_WEIGHT_STEMS = ("tokenizer_",)
WINDOW = (1600, 1000)
# Chromium on a machine without a network: no background traffic, no GPU, no sandbox (root), and
# every host name but the loopback server's fails at once instead of being looked up.
CHROMIUM_ARGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
    f"--window-size={WINDOW[0]},{WINDOW[1]}",
)
# Settings a first start would otherwise act on: the template browser that greets a new user would
# cover the canvas, and the minimap would cover part of it.
FRONTEND_SETTINGS = {"Comfy.TutorialCompleted": True, "Comfy.Minimap.Visible": False}

pytestmark = [
    pytest.mark.comfyui,
    pytest.mark.slow,
    pytest.mark.skipif(comfyui_skip_reason() is not None, reason=str(comfyui_skip_reason())),
]


def _binary(env: str, default: str, name: str) -> str | None:
    if os.environ.get(env):
        return os.environ[env] if Path(os.environ[env]).is_file() else None
    return default if Path(default).is_file() else shutil.which(name)


def browser_skip_reason() -> str | None:
    if importlib.util.find_spec("selenium") is None:
        return "selenium is not installed (pip install selenium)"
    if not _binary("CHROMIUM", "/usr/bin/chromium", "chromium"):
        return "no Chromium (apt-get install chromium, or set CHROMIUM)"
    if not _binary("CHROMEDRIVER", "/usr/bin/chromedriver", "chromedriver"):
        return "no chromedriver (apt-get install chromium-driver, or set CHROMEDRIVER)"
    return None


# --- JavaScript run in the page (arguments[-1] is the callback of execute_async_script) -------------

READY_JS = """
return !!(window.app && app.graph && app.canvas && app.extensionManager && window.LiteGraph
          && LiteGraph.registered_node_types && 'SaveImage' in LiteGraph.registered_node_types);
"""

LOAD_JS = """
const done = arguments[arguments.length - 1];
app.loadGraphData(arguments[0], true, true, arguments[1])
  .then(() => done(null), (e) => done(String((e && e.stack) || e)));
"""

# Every node of the loaded graph: is its type registered, and each widget's value and, for a combo,
# the values it allows.
GRAPH_JS = """
const plain = (v) => (v === null || ['string', 'number', 'boolean'].includes(typeof v)) ? v : String(v);
return app.graph.nodes.map((n) => ({
  id: n.id, type: n.type, title: n.title, mode: n.mode,
  registered: n.type in LiteGraph.registered_node_types,
  widgets: (n.widgets || []).map((w) => {
    let values = w.options ? w.options.values : undefined;
    if (typeof values === 'function') { try { values = values(w, n); } catch (e) { values = undefined; } }
    return {name: w.name, type: w.type, value: plain(w.value),
            values: (w.type === 'combo' && Array.isArray(values)) ? values.map(plain) : null};
  }),
}));
"""

# The frontend's "fit view" command (View menu), then two frames so the canvas has been redrawn.
FIT_VIEW_JS = """
const done = arguments[arguments.length - 1];
const redrawn = () => requestAnimationFrame(() => requestAnimationFrame(() => done(null)));
Promise.resolve(app.extensionManager.command.execute('Comfy.Canvas.FitView'))
  .then(redrawn, (e) => done(String(e)));
"""

PROMPT_JS = """
const done = arguments[arguments.length - 1];
app.graphToPrompt().then((p) => done({output: p.output, workflow: p.workflow, client_id: app.api.clientId}),
                         (e) => done({error: String((e && e.stack) || e)}));
"""

# The graph's bounding box on the page (CSS pixels): every node, its title bar and the badges above it.
BOUNDS_JS = """
const ds = app.canvas.ds, title = LiteGraph.NODE_TITLE_HEIGHT, rect = app.canvas.canvas.getBoundingClientRect();
let x0 = Infinity, y0 = Infinity, x1 = -Infinity, y1 = -Infinity;
for (const n of app.graph.nodes) {
  x0 = Math.min(x0, n.pos[0]); y0 = Math.min(y0, n.pos[1] - title - 22);
  x1 = Math.max(x1, n.pos[0] + n.size[0]); y1 = Math.max(y1, n.pos[1] + n.size[1]);
}
return [rect.left + (x0 + ds.offset[0]) * ds.scale, rect.top + (y0 + ds.offset[1]) * ds.scale,
        rect.left + (x1 + ds.offset[0]) * ds.scale, rect.top + (y1 + ds.offset[1]) * ds.scale, ds.scale];
"""

# Titles of the dialogs the frontend shows (load warnings, execution errors), closing them.
CLOSE_DIALOGS_JS = """
const vue = document.querySelector('#vue-app') && document.querySelector('#vue-app').__vue_app__;
const store = vue && vue.config.globalProperties.$pinia && vue.config.globalProperties.$pinia._s.get('dialog');
if (!store) return [];
const titles = store.dialogStack.map((d) => d.title || d.key);
for (const d of [...store.dialogStack]) store.closeDialog({key: d.key});
return titles;
"""


# --- fixtures ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def artifacts(request, tmp_path_factory):
    folder = Path(os.environ.get("MDIFFAE_BROWSER_ARTIFACTS") or tmp_path_factory.mktemp("browser_artifacts"))
    folder.mkdir(parents=True, exist_ok=True)
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    if reporter and capture:
        with capture.global_and_fixture_disabled():
            reporter.write_line(f"browser test artifacts: {folder}")
    return folder


@pytest.fixture(scope="module")
def comfy(tmp_path_factory):
    base = tmp_path_factory.mktemp("comfy_browser")
    (base / "input").mkdir()
    from fixtures.models import place_tokenizers

    place_tokenizers(base / "models")  # tiny random-weight stand-ins under the tokenizer workflows' names
    # What a fresh install has in input/, nothing of ours.
    shutil.copy(comfyui_dir() / "input" / "example.png", base / "input" / "example.png")
    with comfyui_server(base) as server:
        for key, value in FRONTEND_SETTINGS.items():
            status, body = server.post(f"/api/settings/{key}", value)
            assert status == 200, (key, status, body)
        yield server


@pytest.fixture(scope="module")
def browser(comfy, tmp_path_factory):
    reason = browser_skip_reason()
    if reason:
        pytest.skip(reason)
    os.environ["SE_OFFLINE"] = "true"  # Selenium Manager must never fetch a driver or a browser
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = _binary("CHROMIUM", "/usr/bin/chromium", "chromium")
    for arg in CHROMIUM_ARGS + (f"--user-data-dir={tmp_path_factory.mktemp('chromium_profile')}",):
        options.add_argument(arg)
    service = Service(
        _binary("CHROMEDRIVER", "/usr/bin/chromedriver", "chromedriver"),
        log_output=str(comfy.base / "chromedriver.log"),
    )
    driver = webdriver.Chrome(service=service, options=options)
    try:
        driver.set_script_timeout(120)
        # The page itself WINDOW[0] x WINDOW[1] (--window-size counts the browser's frame too).
        driver.execute_cdp_cmd(
            "Emulation.setDeviceMetricsOverride",
            {"width": WINDOW[0], "height": WINDOW[1], "deviceScaleFactor": 1, "mobile": False},
        )
        driver.get(comfy.url + "/")
        deadline = time.time() + 120
        while not driver.execute_script(READY_JS):
            if time.time() > deadline:
                pytest.fail("the ComfyUI frontend did not get ready (window.app and the node definitions) in 120 s")
            time.sleep(0.25)
        yield driver
    finally:
        driver.quit()


# --- helpers -------------------------------------------------------------------------------------


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR in dB of two uint8 images of one shape, on the [0, 255] scale."""
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else float(10 * np.log10(255.0**2 / mse))


def rgb(path: Path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def resized(image: np.ndarray, shape) -> np.ndarray:
    """``image`` resampled (Lanczos) to ``shape`` ``(H, W, 3)``."""
    from PIL import Image

    return np.asarray(Image.fromarray(image).resize((shape[1], shape[0]), Image.LANCZOS))


def readme_pictures(artifacts: Path, stem: str, screenshot: Path, bounds, outputs) -> list:
    """JPEGs for the README (quality 85): the screenshot cropped to the graph, and the input next to
    every output (``outputs``: ``(title, path)``, the input first), each 320 px tall with its title."""
    from PIL import Image, ImageDraw, ImageFont

    written = []
    with Image.open(screenshot) as shot:
        x0, y0, x1, y1 = (int(round(v)) for v in bounds[:4])
        box = (max(x0 - 16, 0), max(y0 - 16, 0), min(x1 + 16, shot.width), min(y1 + 16, shot.height))
        target = artifacts / f"{stem}__readme_graph.jpg"
        shot.convert("RGB").crop(box).save(target, quality=85)
        written.append(target)
    if outputs:
        height, gap, caption = 320, 8, 22
        try:
            font = ImageFont.load_default(size=15)
        except TypeError:  # Pillow < 10.1
            font = ImageFont.load_default()
        tiles = []
        for title, path in outputs:
            with Image.open(path) as im:
                im = im.convert("RGB")
                tiles.append((title, im.resize((max(1, round(im.width * height / im.height)), height), Image.LANCZOS)))
        strip = Image.new("RGB", (sum(t.width for _, t in tiles) + gap * (len(tiles) - 1), height + caption), "white")
        x = 0
        draw = ImageDraw.Draw(strip)
        for title, tile in tiles:
            strip.paste(tile, (x, caption))
            draw.text((x + 4, 3), title, fill="black", font=font)
            x += tile.width + gap
        target = artifacts / f"{stem}__readme_outputs.jpg"
        strip.save(target, quality=85)
        written.append(target)
    return written


def round_trip_source(prompt: dict, node_id: str) -> str | None:
    """The LoadImage node an output's image was decoded from, if it was: its image input, followed
    upstream through image/pixels/samples links, reaches a LoadImage after passing a decode node."""
    decoded = False
    for _ in range(len(prompt) + 1):
        node = prompt.get(node_id)
        if node is None:
            return None
        if node["class_type"] == "LoadImage":
            return node_id if decoded else None
        decoded = decoded or "Decode" in node["class_type"]
        link = next(
            (
                node["inputs"][k]
                for k in ("images", "image", "pixels", "samples")
                if isinstance(node["inputs"].get(k), list)
            ),
            None,
        )
        if link is None:
            return None
        node_id = str(link[0])
    return None


def input_file(comfy, value: str) -> Path:
    """The file a LoadImage value names ("name.png", "sub/name.png", or "name.png [input]")."""
    if value.endswith("]") and " [" in value:
        value = value.rsplit(" [", 1)[0]
    return comfy.base / "input" / value


def close_dialogs(browser) -> list:
    return browser.execute_script(CLOSE_DIALOGS_JS) or []


# --- tests ---------------------------------------------------------------------------------------


def graph_problems(nodes: list) -> list:
    """Unregistered node types, and combo widgets holding a value outside their options."""
    problems = []
    for n in nodes:
        label = f"node {n['id']} ({n['type']})"
        if not n["registered"]:
            problems.append(f"{label}: node type is not registered in this ComfyUI")
        for w in n["widgets"]:
            if w["values"] is not None and w["value"] not in w["values"]:
                problems.append(f"{label}: combo widget {w['name']!r} holds {w['value']!r}, not one of {w['values']}")
    return problems


def round_trip_psnr(comfy, prompt: dict, source: str, output: Path):
    """``(PSNR, note)`` of an output against the LoadImage image it was decoded from."""
    reference = rgb(input_file(comfy, prompt[source]["inputs"]["image"]))
    out = rgb(output)
    note = ""
    if out.shape != reference.shape:  # scaled on the way (ImageScale): compare at the input's size
        note = f" (resized back from {out.shape[1]}x{out.shape[0]})"
        out = resized(out, reference.shape)
    return psnr(out, reference), note


def check_outputs(comfy, prompt: dict, entry: dict, artifacts: Path, stem: str, summary: dict):
    """Every output node wrote its images; round trips reach the PSNR floor. Returns (problems, pictures),
    pictures being ``(node id, copied file, PSNR or None)`` in node order."""
    problems, pictures = [], []
    for node_id, node in sorted(prompt.items(), key=lambda kv: int(kv[0])):
        if node["class_type"] not in OUTPUT_NODES:
            continue
        images = entry.get("outputs", {}).get(node_id, {}).get("images", [])
        if not images:
            problems.append(f"output node {node_id} ({node['class_type']}) wrote no image")
        source = round_trip_source(prompt, node_id)
        for img in images:
            f = comfy.base / img.get("type", "output") / img.get("subfolder", "") / img["filename"]
            if not f.is_file():
                problems.append(f"output node {node_id}: {f} was reported but not written")
                continue
            copy = artifacts / f"{stem}__{node_id}__{img['filename']}"
            shutil.copy(f, copy)
            summary["images"].append(copy.name)
            value = None
            if source is not None:
                value, note = round_trip_psnr(comfy, prompt, source, f)
                summary["psnr_db"][img["filename"]] = f"{value:.2f}{note}" if note else round(value, 2)
                if value < MIN_ROUND_TRIP_PSNR and not stem.startswith(RANDOM_WEIGHT_STEMS):
                    problems.append(
                        f"output node {node_id}: round trip {img['filename']} is {value:.2f} dB "
                        f"from its input, below {MIN_ROUND_TRIP_PSNR} dB"
                    )
            pictures.append((node_id, copy, value))
    return problems, pictures


def captioned(comfy, prompt: dict, nodes: list, pictures: list) -> list:
    """``(caption, file)`` for the README strip: the input image, then each output titled by the node
    that made it (and its round-trip PSNR)."""
    titles = {str(n["id"]): n["title"] for n in nodes}
    items = [
        ("input", input_file(comfy, n["inputs"]["image"])) for n in prompt.values() if n["class_type"] == "LoadImage"
    ][:1]
    for node_id, path, value in pictures:
        maker = str(prompt[node_id]["inputs"]["images"][0])
        title = titles.get(maker, prompt[maker]["class_type"])
        items.append((f"{title}: {value:.2f} dB" if value is not None else title, path))
    return items


@pytest.mark.parametrize("path", WORKFLOW_FILES, ids=[p.name for p in WORKFLOW_FILES])
def test_workflow_opens_and_runs_in_the_frontend(comfy, browser, artifacts, path):
    stem = path.stem
    summary = {"workflow": str(path), "images": [], "psnr_db": {}, "dialogs": []}
    close_dialogs(browser)

    error = browser.execute_async_script(LOAD_JS, json.loads(path.read_text()), path.name)  # the tab's name
    assert error is None, f"{path.name}: app.loadGraphData failed: {error}"
    summary["dialogs"] += close_dialogs(browser)  # e.g. the missing-nodes or missing-models warning

    nodes = browser.execute_script(GRAPH_JS)
    problems = graph_problems(nodes)
    summary["nodes"] = nodes

    assert browser.execute_async_script(FIT_VIEW_JS) is None
    time.sleep(0.5)  # let image previews (LoadImage) arrive
    browser.save_screenshot(str(artifacts / f"{stem}.png"))

    made = browser.execute_async_script(PROMPT_JS)
    assert "error" not in made, f"{path.name}: app.graphToPrompt failed: {made['error']}"
    prompt = made["output"]
    (artifacts / f"{stem}.prompt.json").write_text(json.dumps(prompt, indent=1) + "\n")
    # As the Run button queues it: the frontend's client id (so it shows progress and results) and
    # the workflow in extra_pnginfo.
    entry = comfy.run_prompt(
        prompt, timeout=900, client_id=made["client_id"], extra_data={"extra_pnginfo": {"workflow": made["workflow"]}}
    )
    if entry.get("status", {}).get("status_str") != "success":
        problems.append(describe_failure(entry))
    else:
        found, pictures = check_outputs(comfy, prompt, entry, artifacts, stem, summary)
        problems += found
        time.sleep(0.5)  # the frontend draws the results on the output nodes, which grow
        browser.execute_async_script(FIT_VIEW_JS)
        after = artifacts / f"{stem}__after_run.png"
        browser.save_screenshot(str(after))
        bounds = browser.execute_script(BOUNDS_JS)
        summary["zoom"] = round(bounds[4], 3)
        written = readme_pictures(artifacts, stem, after, bounds, captioned(comfy, prompt, nodes, pictures))
        summary["readme"] = [p.name for p in written]
    summary["dialogs"] += close_dialogs(browser)  # e.g. the execution-error dialog
    summary["problems"] = problems
    (artifacts / f"{stem}.summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    if problems:  # the list alone (pytrace=False): the test's source would only hide it
        pytest.fail(
            f"{path.name}: {len(problems)} problem(s) (artifacts in {artifacts}):\n- " + "\n- ".join(problems),
            pytrace=False,
        )


def test_workflow_templates_list_this_pack(comfy):
    expected = sorted(p.stem for p in (ROOT / "workflows").glob("*.json"))
    status, body = comfy.get("/api/workflow_templates")
    assert status == 200, body
    assert sorted(body.get(PACK_NAME, [])) == expected, body
    for name in expected:  # what the frontend's template browser then opens
        status, served = comfy.get(f"/api/workflow_templates/{PACK_NAME}/{name}.json")
        assert status == 200 and served == json.loads((ROOT / "workflows" / f"{name}.json").read_text()), name


def test_combo_value_outside_its_options_is_a_node_error(comfy):
    status, info = comfy.get("/object_info/MDiffAELoader")
    assert status == 200, info
    spec = info["MDiffAELoader"]["input"]["required"]
    allowed = spec["dtype"][1]["options"]
    prompt = {
        "1": {"class_type": "LoadImage", "inputs": {"image": "example.png"}},
        "2": {
            "class_type": "MDiffAELoader",
            "inputs": {
                "checkpoint": spec["checkpoint"][1]["options"][0],
                "steps": 1,
                "pdg_strength": 1.0,
                "seed": 0,
                "dtype": "fixed",
            },
        },
        "3": {"class_type": "VAEEncode", "inputs": {"pixels": ["1", 0], "vae": ["2", 0]}},
        "4": {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["2", 0]}},
        "5": {"class_type": "SaveImage", "inputs": {"images": ["4", 0], "filename_prefix": "bad_dtype"}},
    }
    entry = comfy.run_prompt(prompt, timeout=300)
    assert entry.get("status", {}).get("status_str") != "success", "a dtype of 'fixed' was accepted"
    # What the frontend shows: the validation answer, or the execution error of the node.
    shown = json.dumps(entry["node_errors"] if "node_errors" in entry else execution_errors(entry))
    assert "KeyError" not in shown, describe_failure(entry)
    assert "dtype" in shown and all(v in shown for v in allowed), describe_failure(entry)
