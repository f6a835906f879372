"""imaging helpers pinned against their definitions."""


def test_quantize_8bit_is_what_a_saved_png_reads_back_as():
    import torch

    from diffusers_mdiffae.imaging import pil_to_tensor, quantize_8bit, tensor_to_pil

    x = torch.rand(1, 3, 8, 8, generator=torch.Generator().manual_seed(0)) * 2.4 - 1.2  # some outside [-1, 1]
    assert torch.allclose(quantize_8bit(x), pil_to_tensor(tensor_to_pil(x)), atol=1e-6)
