#!/usr/bin/env python
"""Writes the UI-format ComfyUI workflows in this folder (run it after changing a graph or a node).

    python workflows/build_workflows.py

UI format = what the ComfyUI frontend saves and opens (version 0.4): nodes with positions and
``widgets_values``, links ``[id, from_node, from_slot, to_node, to_slot, type]``. The frontend assigns
``widgets_values[i]`` to the node's i-th widget by position, with no check, so every list here is
derived from the node definitions, never written by hand:

* this pack's nodes: their V3 ``define_schema()``, imported with the stand-in ``comfy`` modules of
  ``tests/fixtures/fake_comfy.py`` (no ComfyUI needed);
* stock nodes: the small table ``STOCK`` below, checked against a real ComfyUI's ``/object_info``
  by ``tests/test_comfyui_real.py``.

The frontend's rules (ComfyUI 0.3.64, frontend 1.27): widgets follow the inputs' order; an INT with
``control_after_generate`` (or, when that is not given, named ``seed``/``noise_seed``) is followed by
its "control after generate" value, stored as ``"fixed"`` here so runs reproduce; an upload combo
(``image_upload``) is followed by its upload button's value ``"image"``. The input image is
``example.png``, which every ComfyUI ships in ``input/``. The folder is also served by ComfyUI as
this pack's templates.
"""

from __future__ import annotations

import functools
import importlib
import json
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
SAMPLE = "example.png"  # shipped in every ComfyUI's input/ (768x768)
DEMO = "(bundled demo checkpoint)"
PACK = {"cnr_id": "diffusers-mdiffae", "ver": "0.1.0"}
CORE = {"cnr_id": "comfy-core", "ver": "0.3.64"}
WIDGET_KINDS = ("INT", "FLOAT", "STRING", "BOOLEAN", "COMBO")
EXTRA_VALUES = {"control": "fixed", "upload": "image"}  # what follows a widget with a frontend-only companion
# Combos whose choices are files found at run time (not comparable between installations).
FILE_COMBOS = {("LoadImage", "image"), ("MDiffAELoader", "checkpoint"), ("MDiffAETokenizerLoader", "checkpoint")}
IMAGE_NODES = {"LoadImage", "SaveImage", "PreviewImage"}


@dataclass(frozen=True)
class Widget:
    """One widget as the frontend builds it; ``extra`` names its frontend-only companion value."""

    name: str
    kind: str
    default: object = None
    options: Optional[Tuple] = None
    min: Optional[float] = None
    max: Optional[float] = None
    extra: Optional[str] = None  # "control" or "upload"


@dataclass(frozen=True)
class NodeSpec:
    inputs: Tuple[Tuple[str, str], ...]  # linked inputs (name, type), in slot order
    outputs: Tuple[Tuple[str, str], ...]  # (name, type)
    widgets: Tuple[Widget, ...]


def _tiled():
    return (
        Widget("tile_size", "INT", 512, min=64, max=4096),
        Widget("overlap", "INT", 64, min=0, max=4096),
        Widget("temporal_size", "INT", 64, min=8, max=4096),
        Widget("temporal_overlap", "INT", 8, min=4, max=4096),
    )


# Stock nodes used here (ComfyUI 0.3.64); tests/test_comfyui_real.py compares this with /object_info.
STOCK: Dict[str, NodeSpec] = {
    "LoadImage": NodeSpec((), (("IMAGE", "IMAGE"), ("MASK", "MASK")), (Widget("image", "COMBO", extra="upload"),)),
    "SaveImage": NodeSpec((("images", "IMAGE"),), (), (Widget("filename_prefix", "STRING", "ComfyUI"),)),
    "PreviewImage": NodeSpec((("images", "IMAGE"),), (), ()),
    "VAEEncode": NodeSpec((("pixels", "IMAGE"), ("vae", "VAE")), (("LATENT", "LATENT"),), ()),
    "VAEDecode": NodeSpec((("samples", "LATENT"), ("vae", "VAE")), (("IMAGE", "IMAGE"),), ()),
    "VAEEncodeTiled": NodeSpec((("pixels", "IMAGE"), ("vae", "VAE")), (("LATENT", "LATENT"),), _tiled()),
    "VAEDecodeTiled": NodeSpec((("samples", "LATENT"), ("vae", "VAE")), (("IMAGE", "IMAGE"),), _tiled()),
    "ImageScale": NodeSpec(
        (("image", "IMAGE"),),
        (("IMAGE", "IMAGE"),),
        (
            Widget(
                "upscale_method", "COMBO", "nearest-exact", ("nearest-exact", "bilinear", "area", "bicubic", "lanczos")
            ),
            Widget("width", "INT", 512, min=0, max=16384),
            Widget("height", "INT", 512, min=0, max=16384),
            Widget("crop", "COMBO", "disabled", ("disabled", "center")),
        ),
    ),
}


# -- node definitions -----------------------------------------------------------------------------


def _control(name: str, flag) -> Optional[str]:
    """The frontend's rule: ``control_after_generate ?? name in (seed, noise_seed)`` for INT widgets."""
    return "control" if (flag if flag is not None else name in ("seed", "noise_seed")) else None


def widgets_from_object_info(info: dict) -> Tuple[Widget, ...]:
    """The widgets the frontend builds from one node's ``/object_info`` entry, in order."""
    order = info.get("input_order") or {k: list(v) for k, v in info["input"].items() if k != "hidden"}
    widgets = []
    for category in ("required", "optional"):
        for name in order.get(category, []):
            spec = info["input"][category][name]
            kind, opts = spec[0], (spec[1] if len(spec) > 1 else {}) or {}
            options = None
            if isinstance(kind, list):
                kind, options = "COMBO", tuple(kind)
            elif kind == "COMBO":
                options = tuple(opts.get("options", ()))
            if kind not in WIDGET_KINDS or opts.get("forceInput"):
                continue
            extra = None
            if kind == "INT":
                extra = _control(name, opts.get("control_after_generate"))
            elif kind == "COMBO":
                extra = (
                    "upload" if opts.get("image_upload") else "control" if opts.get("control_after_generate") else None
                )
            default = opts.get("default", options[0] if options else None)
            widgets.append(
                Widget(
                    name, kind, default, options if kind == "COMBO" else None, opts.get("min"), opts.get("max"), extra
                )
            )
    return tuple(widgets)


@functools.lru_cache(maxsize=None)
def pack_specs() -> Dict[str, NodeSpec]:
    """This pack's nodes, read from their ``define_schema()`` under the test suite's stand-in ComfyUI."""
    for path in (str(ROOT), str(ROOT / "tests")):
        if path not in sys.path:
            sys.path.insert(0, path)
    from fixtures import fake_comfy

    ours = [k for k in sys.modules if k == "comfyui_nodes" or k.startswith("comfyui_nodes.")]
    saved = {k: sys.modules.pop(k) for k in ours}
    with tempfile.TemporaryDirectory() as tmp:
        state = fake_comfy.install(Path(tmp) / "models")
        try:
            io = sys.modules["comfy_api.latest"].io
            nodes = importlib.import_module("comfyui_nodes.nodes")
            specs = {}
            for node in nodes.NODES:
                schema = node.define_schema()
                specs[schema.node_id] = _spec_from_schema(io, schema)
        finally:
            fake_comfy.uninstall(state)
            sys.modules.update(saved)
    return specs


def _spec_from_schema(io, schema) -> NodeSpec:
    kinds = {
        io.Int.Input: "INT",
        io.Float.Input: "FLOAT",
        io.String.Input: "STRING",
        io.Boolean.Input: "BOOLEAN",
        io.Combo.Input: "COMBO",
    }
    inputs, widgets = [], []
    for inp in sorted(schema.inputs, key=lambda i: bool(getattr(i, "optional", False))):  # required first
        kind = kinds.get(type(inp))
        if kind is None or getattr(inp, "force_input", None):
            inputs.append((inp.id, type(inp).io_type))
            continue
        options = tuple(inp.options) if kind == "COMBO" else None
        extra = None
        if kind == "INT":
            extra = _control(inp.id, inp.control_after_generate)
        elif kind == "COMBO":
            extra = "upload" if inp.upload is not None else ("control" if inp.control_after_generate else None)
        default = inp.default if inp.default is not None or not options else options[0]
        widgets.append(
            Widget(inp.id, kind, default, options, getattr(inp, "min", None), getattr(inp, "max", None), extra)
        )
    outputs = tuple((o.display_name or o.id or type(o).io_type, type(o).io_type) for o in schema.outputs)
    return NodeSpec(tuple(inputs), outputs, tuple(widgets))


def node_spec(node_type: str) -> NodeSpec:
    if node_type in STOCK:
        return STOCK[node_type]
    specs = pack_specs()
    if node_type not in specs:
        raise KeyError(f"unknown node type {node_type!r}: not in STOCK and not one of this pack's {sorted(specs)}")
    return specs[node_type]


def widgets_values(node_type: str, **values) -> list:
    """``widgets_values`` of a ``node_type`` node: defaults, overridden by ``values`` (checked), extras inserted."""
    spec = node_spec(node_type)
    unknown = set(values) - {w.name for w in spec.widgets}
    if unknown:
        names = [w.name for w in spec.widgets]
        raise KeyError(f"{node_type} has no widget(s) {sorted(unknown)}; its widgets: {names}")
    out = []
    for w in spec.widgets:
        value = values.get(w.name, w.default)
        if value is None:
            raise ValueError(f"{node_type}.{w.name} has no default: give a value")
        if w.options is not None and (node_type, w.name) not in FILE_COMBOS and value not in w.options:
            raise ValueError(f"{node_type}.{w.name} = {value!r} is not one of {list(w.options)}")
        low, high = (w.min, w.max) if w.kind in ("INT", "FLOAT") else (None, None)
        if (low is not None and value < low) or (high is not None and value > high):
            raise ValueError(f"{node_type}.{w.name} = {value!r} is outside [{w.min}, {w.max}]")
        out.append(value)
        if w.extra:
            out.append(EXTRA_VALUES[w.extra])
    return out


# -- graphs ---------------------------------------------------------------------------------------

# Node width and the gaps between nodes. Small enough that "fit view" on a 1600x1000 page draws the
# widest graph at about 70 % (below ~57 % the frontend stops drawing text); gaps leave room for the
# badges the frontend draws under a node (source pack, [BETA]) and for the node titles.
WIDTH = 260
WIDE = 300  # the first column (input image, loader: its checkpoint names are long)
COL = WIDTH + 40
GAP = 64


def x_of(column: int) -> int:
    """Left edge of a column; column 0 is the wide one."""
    return 20 if column == 0 else 20 + WIDE + 40 + (column - 1) * COL


def node_height(node_type: str, width: int = WIDTH) -> int:
    """Room for the title, the slots and every widget; image-showing nodes get room for the picture
    (square images fill the node's width, plus the size caption)."""
    spec = node_spec(node_type)
    rows = max(len(spec.inputs), len(spec.outputs))
    widgets = len(spec.widgets) + sum(1 for w in spec.widgets if w.extra)
    height = 10 + 22 * rows + 24 * widgets
    return height + width + 60 if node_type in IMAGE_NODES else height


@dataclass
class Graph:
    nodes: List[dict] = field(default_factory=list)
    links: List[list] = field(default_factory=list)

    def add(self, type_: str, pos, title: str = None, **values) -> int:
        spec = node_spec(type_)
        node_id = len(self.nodes) + 1
        width = WIDE if pos[0] == x_of(0) else WIDTH
        node = {
            "id": node_id,
            "type": type_,
            "pos": list(pos),
            "size": [width, node_height(type_, width)],
            "flags": {},
            "order": node_id - 1,
            "mode": 0,
            "inputs": [{"name": n, "type": t, "link": None} for n, t in spec.inputs],
            "outputs": [{"name": n, "type": t, "links": [], "slot_index": i} for i, (n, t) in enumerate(spec.outputs)],
            "properties": {"Node name for S&R": type_, **(CORE if type_ in STOCK else PACK)},
            "widgets_values": widgets_values(type_, **values),
        }
        if title:
            node["title"] = title
        self.nodes.append(node)
        return node_id

    def below(self, node_id: int, gap: int = GAP) -> int:
        """The y just under node ``node_id``."""
        node = self.nodes[node_id - 1]
        return node["pos"][1] + node["size"][1] + gap

    def link(self, src: int, src_slot: int, dst: int, dst_input: str) -> None:
        link_id = len(self.links) + 1
        dst_node = self.nodes[dst - 1]
        slot = [i["name"] for i in dst_node["inputs"]].index(dst_input)
        type_ = dst_node["inputs"][slot]["type"]
        dst_node["inputs"][slot]["link"] = link_id
        self.nodes[src - 1]["outputs"][src_slot]["links"].append(link_id)
        self.links.append([link_id, src, src_slot, dst, slot, type_])

    def to_json(self) -> dict:
        return {
            "id": "00000000-0000-4000-8000-0000000000" + f"{len(self.nodes):02d}",
            "revision": 0,
            "last_node_id": len(self.nodes),
            "last_link_id": len(self.links),
            "nodes": self.nodes,
            "links": self.links,
            "groups": [],
            "config": {},
            "extra": {"ds": {"scale": 0.8, "offset": [0, 0]}},
            "version": 0.4,
        }


def _image_and_loader(g: Graph, checkpoint: str = DEMO, image: str = SAMPLE) -> Tuple[int, int]:
    img = g.add("LoadImage", (x_of(0), 20), image=image)
    vae = g.add("MDiffAELoader", (x_of(0), g.below(img)), checkpoint=checkpoint)
    return img, vae


def roundtrip_stock() -> dict:
    """LoadImage -> MDiffAELoader -> stock VAEEncode -> stock VAEDecode -> SaveImage."""
    g = Graph()
    img, vae = _image_and_loader(g)
    enc = g.add("VAEEncode", (x_of(1), 20))
    dec = g.add("VAEDecode", (x_of(2), 20))
    save = g.add("SaveImage", (x_of(3), 20), filename_prefix="mdiffae_roundtrip")
    g.link(img, 0, enc, "pixels"), g.link(vae, 0, enc, "vae")
    g.link(enc, 0, dec, "samples"), g.link(vae, 0, dec, "vae")
    g.link(dec, 0, save, "images")
    return g.to_json()


DECODES = [  # steps, PDG strength, sampler
    (1, 1.0, "ddim"),
    (4, 1.0, "ddim"),
    (4, 1.05, "ddim"),
    (8, 1.2, "dpmpp_2m"),
]


def steps_and_pdg() -> dict:
    """One latent decoded side by side (1 step, 4 steps, 4 + PDG, 8 + PDG with DPM++ 2M) and its PCA picture."""
    g = Graph()
    img, vae = _image_and_loader(g)
    enc = g.add("MDiffAEEncode", (x_of(1), 20))
    g.link(img, 0, enc, "pixels"), g.link(vae, 0, enc, "vae")
    pca = g.add("MDiffAELatentPreview", (x_of(1), g.below(enc)))
    save = g.add("SaveImage", (x_of(1), g.below(pca)), filename_prefix="mdiffae_latent_pca")
    g.link(enc, 0, pca, "samples"), g.link(pca, 0, save, "images")
    for i, (steps, pdg, sampler) in enumerate(DECODES):
        x = x_of(2 + i)
        title = (
            f"{steps} step{'s' if steps > 1 else ''}"
            + (f", PDG {pdg}" if pdg != 1.0 else "")
            + (f", {sampler}" if sampler != "ddim" else "")
        )
        dec = g.add("MDiffAEDecode", (x, 20), title=title, steps=steps, pdg_strength=pdg, sampler=sampler)
        prefix = (
            f"mdiffae_{steps}step"
            + ("s" if steps > 1 else "")
            + ("_pdg" if pdg != 1.0 else "")
            + ("_dpm" if sampler != "ddim" else "")
        )
        save = g.add("SaveImage", (x, g.below(dec)), filename_prefix=prefix)
        g.link(enc, 0, dec, "samples"), g.link(vae, 0, dec, "vae"), g.link(dec, 0, save, "images")
    return g.to_json()


def tiled_highres() -> dict:
    """A 1024x1024 round trip through the stock tiled nodes (512-pixel tiles, 64-pixel overlap)."""
    g = Graph()
    img, vae = _image_and_loader(g)
    big = g.add("ImageScale", (x_of(1), 20), upscale_method="bicubic", width=1024, height=1024)
    enc = g.add("VAEEncodeTiled", (x_of(1), g.below(big)), tile_size=512, overlap=64)
    dec = g.add("VAEDecodeTiled", (x_of(2), 20), tile_size=512, overlap=64)
    save = g.add("SaveImage", (x_of(3), 20), filename_prefix="mdiffae_tiled_1024")
    g.link(img, 0, big, "image"), g.link(big, 0, enc, "pixels"), g.link(vae, 0, enc, "vae")
    g.link(enc, 0, dec, "samples"), g.link(vae, 0, dec, "vae"), g.link(dec, 0, save, "images")
    return g.to_json()


def family_check(checkpoint: str, prefix: str, image: str = SAMPLE) -> dict:
    """Every node of the pack on one checkpoint (for tests with tiny checkpoints of each family member).

    Stock VAE Encode/Decode round trip; MDiffAE Encode -> MDiffAE Decode with every option changed
    from its default (2 steps, PDG 1.5, DPM++ 2M, cosine, strength 0.9); the latent's PCA picture;
    and an empty latent shaped by the VAE, decoded.
    """
    g = Graph()
    img, vae = _image_and_loader(g, checkpoint, image)
    enc = g.add("VAEEncode", (x_of(1), 20))
    dec = g.add("VAEDecode", (x_of(1), g.below(enc)))
    g.link(img, 0, enc, "pixels"), g.link(vae, 0, enc, "vae")
    g.link(enc, 0, dec, "samples"), g.link(vae, 0, dec, "vae")
    save = g.add("SaveImage", (x_of(2), 20), filename_prefix=f"{prefix}_stock")
    g.link(dec, 0, save, "images")
    menc = g.add("MDiffAEEncode", (x_of(3), 20))
    mdec = g.add(
        "MDiffAEDecode",
        (x_of(3), g.below(menc)),
        steps=2,
        pdg_strength=1.5,
        seed=3,
        sampler="dpmpp_2m",
        schedule="cosine",
        strength=0.9,
    )
    g.link(img, 0, menc, "pixels"), g.link(vae, 0, menc, "vae")
    g.link(menc, 0, mdec, "samples"), g.link(vae, 0, mdec, "vae")
    save = g.add("SaveImage", (x_of(4), 20), filename_prefix=f"{prefix}_options")
    g.link(mdec, 0, save, "images")
    pca = g.add("MDiffAELatentPreview", (x_of(5), 20), upscale=16)
    g.link(menc, 0, pca, "samples")
    save = g.add("SaveImage", (x_of(5), g.below(pca)), filename_prefix=f"{prefix}_pca")
    g.link(pca, 0, save, "images")
    empty = g.add("MDiffAEEmptyLatent", (x_of(6), 20), width=128, height=96, batch_size=2)
    edec = g.add("MDiffAEDecode", (x_of(6), g.below(empty)), steps=1)
    g.link(vae, 0, empty, "vae"), g.link(empty, 0, edec, "samples"), g.link(vae, 0, edec, "vae")
    save = g.add("SaveImage", (x_of(7), 20), filename_prefix=f"{prefix}_empty")
    g.link(edec, 0, save, "images")
    return g.to_json()


# The other tokenizers, under the names their published weights have once downloaded into
# models/tokenizers (the MAETok / SoftVQ-VAE repositories as folders, LDMAE's VMAE as its .pth).
TOKENIZER_CHECKPOINTS = {
    "maetok": "maetok-b-128/model.safetensors",
    "softvq": "softvq-bl-64/model.safetensors",
    "vmae": "vmaef8d16.pth",
}
TOKENIZER_SIZE = 256  # every published one takes 256x256 images only


def tokenizer_roundtrip(kind: str, checkpoint: Optional[str] = None) -> dict:
    """LoadImage -> ImageScale (256x256, centre crop) -> Load Tokenizer -> stock VAE Encode/Decode -> SaveImage."""
    g = Graph()
    img = g.add("LoadImage", (x_of(0), 20), image=SAMPLE)
    vae = g.add(
        "MDiffAETokenizerLoader", (x_of(0), g.below(img)), checkpoint=checkpoint or TOKENIZER_CHECKPOINTS[kind]
    )
    scale = g.add(
        "ImageScale",
        (x_of(1), 20),
        upscale_method="bicubic",
        width=TOKENIZER_SIZE,
        height=TOKENIZER_SIZE,
        crop="center",
    )
    enc = g.add("VAEEncode", (x_of(1), g.below(scale)))
    dec = g.add("VAEDecode", (x_of(2), 20))
    save = g.add("SaveImage", (x_of(3), 20), filename_prefix=f"{kind}_roundtrip")
    g.link(img, 0, scale, "image"), g.link(scale, 0, enc, "pixels"), g.link(vae, 0, enc, "vae")
    g.link(enc, 0, dec, "samples"), g.link(vae, 0, dec, "vae"), g.link(dec, 0, save, "images")
    return g.to_json()


def to_api(ui: dict) -> dict:
    """The API-format prompt (what ``POST /prompt`` executes) of a UI graph built here."""
    links = {link[0]: link for link in ui["links"]}
    prompt = {}
    for node in ui["nodes"]:
        inputs = {}
        values = iter(node["widgets_values"])
        for w in node_spec(node["type"]).widgets:
            inputs[w.name] = next(values)
            if w.extra:
                next(values)  # frontend-only: never sent
        for inp in node["inputs"]:
            if inp["link"] is not None:
                _, src, slot, _, _, _ = links[inp["link"]]
                inputs[inp["name"]] = [str(src), slot]
        prompt[str(node["id"])] = {
            "class_type": node["type"],
            "inputs": inputs,
            "_meta": {"title": node.get("title", node["type"])},
        }
    return prompt


WORKFLOWS = {
    "mdiffae_roundtrip_stock_nodes.json": roundtrip_stock,
    "mdiffae_decode_steps_pdg.json": steps_and_pdg,
    "mdiffae_tiled_highres.json": tiled_highres,
    **{
        f"tokenizer_{kind}_roundtrip.json": functools.partial(tokenizer_roundtrip, kind)
        for kind in TOKENIZER_CHECKPOINTS
    },
}


def main(argv: Sequence[str] = ()) -> None:
    for name, build in WORKFLOWS.items():
        (HERE / name).write_text(json.dumps(build(), indent=1) + "\n")
        print(f"wrote {HERE / name}")


if __name__ == "__main__":
    main(sys.argv[1:])
