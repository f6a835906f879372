#!/usr/bin/env python
"""Writes the UI-format ComfyUI workflows in this folder (run it after changing a graph).

    python workflows/build_workflows.py

UI format = what the ComfyUI frontend saves and opens (version 0.4): nodes with positions,
widget values in input order (a seed widget is followed by its "control after generate" value),
and links ``[id, from_node, from_slot, to_node, to_slot, type]``. The folder is also served by
ComfyUI as this pack's templates. Standard library only.
"""

from __future__ import annotations

import json
from pathlib import Path

HERE = Path(__file__).resolve().parent
SAMPLE = "astronaut_256.png"  # the package's sample photo; copy any image into ComfyUI/input and pick it
DEMO = "(bundled demo checkpoint)"
PACK = {"cnr_id": "diffusers-mdiffae", "ver": "0.1.0"}

# Output slots of every node type used below: (name, type).
OUTPUTS = {
    "LoadImage": [("IMAGE", "IMAGE"), ("MASK", "MASK")],
    "MDiffAELoader": [("VAE", "VAE")],
    "VAEEncode": [("LATENT", "LATENT")],
    "VAEDecode": [("IMAGE", "IMAGE")],
    "VAEEncodeTiled": [("LATENT", "LATENT")],
    "VAEDecodeTiled": [("IMAGE", "IMAGE")],
    "MDiffAEEncode": [("LATENT", "LATENT")],
    "MDiffAEDecode": [("IMAGE", "IMAGE")],
    "MDiffAELatentPreview": [("IMAGE", "IMAGE")],
    "ImageScale": [("IMAGE", "IMAGE")],
    "SaveImage": [],
}
# Linked inputs of every node type: (name, type), in slot order.
INPUTS = {
    "LoadImage": [],
    "MDiffAELoader": [],
    "VAEEncode": [("pixels", "IMAGE"), ("vae", "VAE")],
    "VAEDecode": [("samples", "LATENT"), ("vae", "VAE")],
    "VAEEncodeTiled": [("pixels", "IMAGE"), ("vae", "VAE")],
    "VAEDecodeTiled": [("samples", "LATENT"), ("vae", "VAE")],
    "MDiffAEEncode": [("pixels", "IMAGE"), ("vae", "VAE")],
    "MDiffAEDecode": [("samples", "LATENT"), ("vae", "VAE")],
    "MDiffAELatentPreview": [("samples", "LATENT")],
    "ImageScale": [("image", "IMAGE")],
    "SaveImage": [("images", "IMAGE")],
}
# Widget names in widgets_values order; None marks the frontend-only extra values (the upload
# button value after LoadImage's combo, "control after generate" after a seed).
WIDGETS = {
    "LoadImage": ["image", None],
    "MDiffAELoader": ["checkpoint", "steps", "pdg_strength", "seed", None, "dtype"],
    "VAEEncodeTiled": ["tile_size", "overlap", "temporal_size", "temporal_overlap"],
    "VAEDecodeTiled": ["tile_size", "overlap", "temporal_size", "temporal_overlap"],
    "MDiffAEDecode": ["steps", "pdg_strength", "seed", None],
    "MDiffAELatentPreview": ["upscale"],
    "ImageScale": ["upscale_method", "width", "height", "crop"],
    "SaveImage": ["filename_prefix"],
}
STOCK = {"LoadImage", "VAEEncode", "VAEDecode", "VAEEncodeTiled", "VAEDecodeTiled", "ImageScale", "SaveImage"}


class Graph:
    def __init__(self):
        self.nodes, self.links = [], []

    def add(self, type_: str, widgets: list, pos, title: str = None) -> int:
        node_id = len(self.nodes) + 1
        props = {"Node name for S&R": type_}
        props.update({"cnr_id": "comfy-core", "ver": "0.3.64"} if type_ in STOCK else PACK)
        node = {
            "id": node_id, "type": type_, "pos": list(pos), "size": [300, 130], "flags": {}, "order": node_id - 1,
            "mode": 0,
            "inputs": [{"name": n, "type": t, "link": None} for n, t in INPUTS[type_]],
            "outputs": [{"name": n, "type": t, "links": [], "slot_index": i} for i, (n, t) in enumerate(OUTPUTS[type_])],
            "properties": props, "widgets_values": widgets,
        }
        if title:
            node["title"] = title
        self.nodes.append(node)
        return node_id

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
            "revision": 0, "last_node_id": len(self.nodes), "last_link_id": len(self.links),
            "nodes": self.nodes, "links": self.links, "groups": [], "config": {},
            "extra": {"ds": {"scale": 0.8, "offset": [0, 0]}}, "version": 0.4,
        }


def loader(g: Graph, steps=1, pdg=1.0, seed=0) -> int:
    return g.add("MDiffAELoader", [DEMO, steps, pdg, seed, "fixed", "auto"], (20, 300))


def roundtrip_stock() -> dict:
    """LoadImage -> MDiffAELoader -> stock VAEEncode -> stock VAEDecode -> SaveImage."""
    g = Graph()
    img = g.add("LoadImage", [SAMPLE, "image"], (20, 20))
    vae = loader(g)
    enc = g.add("VAEEncode", [], (380, 20))
    dec = g.add("VAEDecode", [], (720, 20))
    save = g.add("SaveImage", ["mdiffae_roundtrip"], (1060, 20))
    g.link(img, 0, enc, "pixels"), g.link(vae, 0, enc, "vae")
    g.link(enc, 0, dec, "samples"), g.link(vae, 0, dec, "vae")
    g.link(dec, 0, save, "images")
    return g.to_json()


def steps_and_pdg() -> dict:
    """One latent decoded side by side: 1 step, 4 steps, 4 steps + PDG, 8 steps + stronger PDG; and its PCA."""
    g = Graph()
    img = g.add("LoadImage", [SAMPLE, "image"], (20, 20))
    vae = loader(g)
    enc = g.add("MDiffAEEncode", [], (380, 20))
    g.link(img, 0, enc, "pixels"), g.link(vae, 0, enc, "vae")
    for row, (steps, pdg) in enumerate([(1, 1.0), (4, 1.0), (4, 1.05), (8, 1.2)]):
        dec = g.add("MDiffAEDecode", [steps, pdg, 0, "fixed"], (720, 20 + 220 * row), title=f"{steps} step(s), PDG {pdg}")
        save = g.add("SaveImage", [f"mdiffae_steps{steps}_pdg{pdg}"], (1060, 20 + 220 * row))
        g.link(enc, 0, dec, "samples"), g.link(vae, 0, dec, "vae"), g.link(dec, 0, save, "images")
    pca = g.add("MDiffAELatentPreview", [16], (380, 300))
    save = g.add("SaveImage", ["mdiffae_latent_pca"], (720, 900))
    g.link(enc, 0, pca, "samples"), g.link(pca, 0, save, "images")
    return g.to_json()


def tiled_highres() -> dict:
    """A 1024x1024 round trip through the stock tiled nodes (512-pixel tiles, 64-pixel overlap)."""
    g = Graph()
    img = g.add("LoadImage", [SAMPLE, "image"], (20, 20))
    big = g.add("ImageScale", ["bicubic", 1024, 1024, "disabled"], (380, 20))
    vae = loader(g)
    enc = g.add("VAEEncodeTiled", [512, 64, 64, 8], (720, 20))
    dec = g.add("VAEDecodeTiled", [512, 64, 64, 8], (1060, 20))
    save = g.add("SaveImage", ["mdiffae_tiled_1024"], (1400, 20))
    g.link(img, 0, big, "image"), g.link(big, 0, enc, "pixels"), g.link(vae, 0, enc, "vae")
    g.link(enc, 0, dec, "samples"), g.link(vae, 0, dec, "vae"), g.link(dec, 0, save, "images")
    return g.to_json()


def to_api(ui: dict) -> dict:
    """The API-format prompt (what ``POST /prompt`` executes) of a UI graph built here."""
    links = {link[0]: link for link in ui["links"]}
    prompt = {}
    for node in ui["nodes"]:
        inputs = {}
        for name, value in zip(WIDGETS.get(node["type"], []), node["widgets_values"]):
            if name is not None:
                inputs[name] = value
        for inp in node["inputs"]:
            if inp["link"] is not None:
                _, src, slot, _, _, _ = links[inp["link"]]
                inputs[inp["name"]] = [str(src), slot]
        prompt[str(node["id"])] = {"class_type": node["type"], "inputs": inputs,
                                   "_meta": {"title": node.get("title", node["type"])}}
    return prompt


WORKFLOWS = {
    "mdiffae_roundtrip_stock_nodes.json": roundtrip_stock,
    "mdiffae_decode_steps_pdg.json": steps_and_pdg,
    "mdiffae_tiled_highres.json": tiled_highres,
}


def main() -> None:
    for name, build in WORKFLOWS.items():
        (HERE / name).write_text(json.dumps(build(), indent=1) + "\n")
        print(f"wrote {HERE / name}")


if __name__ == "__main__":
    main()
