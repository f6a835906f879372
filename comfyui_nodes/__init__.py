"""ComfyUI node pack for mDiffAE (V3 schema). Imported only by ComfyUI: it needs ``comfy``."""

from .nodes import NODES, comfy_entrypoint

__all__ = ["NODES", "comfy_entrypoint"]
