"""ComfyUI entry point: this repository cloned into ``ComfyUI/custom_nodes/`` is a node pack.

ComfyUI imports this file as a package. The library next to this file is the one used
(``pip install -r requirements.txt`` installs its dependencies; ComfyUI-Manager does it), even
when another copy of ``diffusers_mdiffae`` is installed in ComfyUI's Python. Outside ComfyUI
(pytest collecting the tests below this folder, packaging tools) there is no ``comfy_api`` and
nothing is registered.
"""

import os
import sys

try:
    import comfy_api  # noqa: F401  (present only inside ComfyUI)
except ImportError:
    __all__ = []
else:
    # The nodes and the library must come from the same checkout: this folder goes first on the
    # path, so a different diffusers_mdiffae installed in ComfyUI's Python does not shadow it.
    _here = os.path.dirname(os.path.abspath(__file__))
    if _here not in sys.path:
        sys.path.insert(0, _here)

    from .comfyui_nodes import comfy_entrypoint

    __all__ = ["comfy_entrypoint"]
