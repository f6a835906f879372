import os

# No test may reach the network: the Hub is unreachable here and tests must not depend on it.
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest
import torch

from diffusers_mdiffae import AutoencoderMDiffAE

# Small enough to run every test in well under a second, but with every kind of module
# (outer norms, token-mask feature, several blocks) the published configuration has.
TINY = dict(model_dim=32, encoder_depth=1, decoder_depth=2, adaln_low_rank_rank=8, mlp_ratio=2.0)


def make_tiny(seed: int = 0, **overrides) -> AutoencoderMDiffAE:
    """A tiny AutoencoderMDiffAE with non-trivial weights (AdaLN-Zero would make a fresh decoder constant)."""
    torch.manual_seed(seed)
    model = AutoencoderMDiffAE(**{**TINY, **overrides})
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "adaln" in name or "mask_feature" in name or name.endswith("gate1") or name.endswith("gate2"):
                p.normal_(0, 0.05)
    return model.eval()


@pytest.fixture
def tiny():
    return make_tiny()


def images(b=1, h=64, w=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(b, 3, h, w, generator=g) * 2 - 1


def write_odd_images(folder):
    """The awkward files an image folder holds in practice: corrupt, grayscale, RGBA, 16-bit."""
    import numpy as np
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    Image.fromarray(np.full((40, 40), 128, np.uint8), "L").save(folder / "gray.png")
    Image.fromarray(np.full((40, 40, 4), 200, np.uint8), "RGBA").save(folder / "rgba.png")
    Image.fromarray(np.full((40, 40), 40000, np.uint16)).save(folder / "deep16.png")
    return folder
