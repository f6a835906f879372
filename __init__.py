"""ComfyUI entry point: this repository cloned into ``ComfyUI/custom_nodes/`` is a node pack.

ComfyUI imports this file as a package. If ``diffusers_mdiffae`` is not installed in ComfyUI's
Python (``pip install -r requirements.txt`` installs its dependencies; ComfyUI-Manager does it),
the copy next to this file is used. Outside ComfyUI (pytest collecting the tests below this
folder, packaging tools) there is no ``comfy_api`` and nothing is registered.
"""

import os
import sys

try:
    import comfy_api  # noqa: F401  (present only inside ComfyUI)
except ImportError:
    __all__ = []
else:
    try:
        import diffusers_mdiffae  # noqa: F401
    except ImportError:
        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

    from .comfyui_nodes import comfy_entrypoint

    __all__ = ["comfy_entrypoint"]
