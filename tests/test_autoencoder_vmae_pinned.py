"""AutoencoderVMAE's own loading and saving (from_pretrained / save_pretrained), pinned.

The tiny VMAE of ``fixtures.models`` written as an LDMAE ``.pth`` (``write_vmae_pth``) or saved as a
diffusers folder; each test checks what a caller sees: the model or ``(model, info)``, the files in
the folder, the exact refusal sentences.
"""

import json
import locale
import math

import pytest
import torch
from fixtures.models import TOKENIZERS, make_tiny_tokenizer, write_vmae_pth

from diffusers_mdiffae import AutoencoderVMAE
from diffusers_mdiffae.models.autoencoders.autoencoder_vmae import LICENSE_NOTE

NO_LOADING_ISSUES = {"missing_keys": [], "unexpected_keys": [], "mismatched_keys": [], "error_msgs": []}


@pytest.fixture(scope="module")
def tiny():
    return make_tiny_tokenizer("vmae", seed=2)


def same_weights(a, b) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_a_pth_in_a_subfolder_loads_through_the_converter(tiny, tmp_path):
    (tmp_path / "repo" / "vmae").mkdir(parents=True)
    write_vmae_pth(tiny, tmp_path / "repo" / "vmae" / "vmaef8d16.pth")
    loaded = AutoencoderVMAE.from_pretrained(tmp_path / "repo", subfolder="vmae")
    assert type(loaded) is AutoencoderVMAE and same_weights(loaded, tiny)


def test_loading_info_of_a_pth_reports_no_issue_in_diffusers_keys(tiny, tmp_path):
    path = write_vmae_pth(tiny, tmp_path / "vmaef8d16.pth")
    model, info = AutoencoderVMAE.from_pretrained(path, output_loading_info=True)
    assert same_weights(model, tiny)
    assert info == NO_LOADING_ISSUES
    assert isinstance(AutoencoderVMAE.from_pretrained(path), AutoencoderVMAE)
    assert isinstance(AutoencoderVMAE.from_pretrained(path, output_loading_info=False), AutoencoderVMAE)
    # the same keys as diffusers' own loading info of a saved folder
    tiny.save_pretrained(tmp_path / "saved")
    saved, saved_info = AutoencoderVMAE.from_pretrained(tmp_path / "saved", output_loading_info=True)
    assert set(saved_info) == set(info) and same_weights(saved, tiny)


def test_loading_a_pth_refuses_arguments_it_cannot_honour(tiny, tmp_path):
    path = write_vmae_pth(tiny, tmp_path / "vmaef8d16.pth")
    with pytest.raises(TypeError) as err:
        AutoencoderVMAE.from_pretrained(path, variant="fp16", low_cpu_mem_usage=False)
    assert str(err.value) == "unsupported argument(s) for loading a .pth checkpoint: ['low_cpu_mem_usage', 'variant']"
    with pytest.raises(TypeError) as err:  # only the constructor's own parameters pass, not its `self`
        AutoencoderVMAE.from_pretrained(path, self=None)
    assert str(err.value) == "unsupported argument(s) for loading a .pth checkpoint: ['self']"
    cast = AutoencoderVMAE.from_pretrained(path, torch_dtype=torch.float64, subfolder=None)
    assert {p.dtype for p in cast.parameters()} == {torch.float64}


@pytest.mark.parametrize(
    "config, holds",
    [({"_class_name": "AutoencoderKL", "latent_channels": 4}, "AutoencoderKL"), ({"embed_dim": 24}, "non-diffusers")],
)
def test_a_folder_of_another_model_is_refused_pointing_at_the_pth(tmp_path, config, holds):
    folder = tmp_path / "other"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError) as err:
        AutoencoderVMAE.from_pretrained(folder)
    assert str(err.value) == (
        f"{folder} holds a {holds} config, not a AutoencoderVMAE folder (pass the original .pth file to convert one)"
    )


def test_save_pretrained_writes_config_weights_and_the_licence_note(tiny, tmp_path):
    tiny.save_pretrained(tmp_path / "m")
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == [
        "LICENSE_NOTE.md",
        "config.json",
        "diffusion_pytorch_model.safetensors",
    ]
    note = (tmp_path / "m" / "LICENSE_NOTE.md").read_bytes()
    assert note == f"# AutoencoderVMAE: licence of the weights\n\n{LICENSE_NOTE}\n".encode()


def test_save_pretrained_keeps_an_existing_licence_note(tiny, tmp_path):
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "LICENSE_NOTE.md").write_text("the user's own note\n")
    tiny.save_pretrained(tmp_path / "m")
    assert (tmp_path / "m" / "LICENSE_NOTE.md").read_text() == "the user's own note\n"


def test_a_process_other_than_the_main_one_writes_the_weights_only(tiny, tmp_path):
    tiny.save_pretrained(tmp_path / "m", is_main_process=False)
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["diffusion_pytorch_model.safetensors"]


def test_the_licence_note_is_utf8_whatever_the_locale(tiny, tmp_path):
    """A subclass named outside ASCII, saved under the ASCII C locale: the note is still written, as UTF-8."""
    renamed = type("AutoencoderVMAÉ", (AutoencoderVMAE,), {})
    model = make_tiny_tokenizer("vmae", seed=2)
    model.__class__ = renamed
    before = locale.setlocale(locale.LC_CTYPE)
    locale.setlocale(locale.LC_CTYPE, "C")
    try:
        model.save_pretrained(tmp_path / "m")
    finally:
        locale.setlocale(locale.LC_CTYPE, before)
    note = (tmp_path / "m" / "LICENSE_NOTE.md").read_bytes()
    assert note.startswith("# AutoencoderVMAÉ: licence of the weights\n\n".encode())


# -- position table, latent checks, encoding -------------------------------------------------------


def expected_sincos(grid: int, dim: int) -> torch.Tensor:
    """The docstring's table, in float64 with ``math``: columns in the first half, rows in the second."""
    quarter = dim // 4
    table = torch.zeros(grid * grid, dim, dtype=torch.float64)
    for n in range(grid * grid):
        for half, pos in enumerate((n % grid, n // grid)):
            for k in range(quarter):
                angle = pos * 10000.0 ** (-k / quarter)
                table[n, half * dim // 2 + k] = math.sin(angle)
                table[n, half * dim // 2 + quarter + k] = math.cos(angle)
    return table[None]


@pytest.mark.parametrize("grid, dim", [(16, 32), (4, 8), (1, 4)])
def test_sincos_table_is_the_definition_rounded_once_to_float32(grid, dim):
    from diffusers_mdiffae.models.autoencoders.autoencoder_vmae import sincos_table

    table = sincos_table(grid, dim)
    assert table.shape == (1, grid * grid, dim) and table.dtype == torch.float32
    # computed in float64 and rounded once: within half a float32 step (values are at most 1)
    torch.testing.assert_close(table.double(), expected_sincos(grid, dim), rtol=0, atol=3.0e-8)


def test_sincos_table_of_a_width_not_divisible_by_4_is_zeros():
    from diffusers_mdiffae.models.autoencoders.autoencoder_vmae import sincos_table

    assert torch.equal(sincos_table(3, 6), torch.zeros(1, 9, 6))


def test_nonfinite_latents_are_refused_counting_them(tiny):
    g = tiny.latent_grid
    z = torch.zeros(1, tiny.config.latent_dim, g, g)
    z[0, 0, 0, :2] = float("nan")
    z[0, 1, 0, 0] = float("inf")
    with pytest.raises(ValueError) as err:
        tiny.decode(z)
    assert str(err.value) == "latents contains 3 NaN or infinite values; clean the input before encoding/decoding"


def small_vmae():
    """The tiny VMAE at 32 x 32 pixels (a 4 x 4 latent grid), for tests that run it."""
    torch.manual_seed(5)
    config = dict(TOKENIZERS["vmae"][1], img_size=32)
    return AutoencoderVMAE(**config, decoder_embed_dim=24, decoder_depth=1, decoder_num_heads=12, latent_dim=4).eval()


def test_images_are_cast_to_the_models_dtype_before_encoding():
    model = small_vmae().double()
    x = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(0)) * 2 - 1
    with torch.no_grad():
        assert torch.equal(model.encode_moments(x), model.encode_moments(x.double()))


def test_latents_are_cast_to_the_models_dtype_before_decoding():
    model = small_vmae()
    z = torch.randn(1, 4, 4, 4, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    with torch.no_grad():
        assert torch.equal(model.decode(z).sample, model.decode(z.float()).sample)


def test_a_batch_is_encoded_in_one_pass_unless_slicing_is_enabled(monkeypatch):
    model = small_vmae()
    calls = []
    real = model._moments

    def moments(x):
        calls.append(x.shape[0])
        return real(x)

    monkeypatch.setattr(model, "_moments", moments)
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(1)) * 2 - 1
    with torch.no_grad():
        whole = model.encode_moments(x)
        assert calls == [2]
        model.enable_slicing()
        sliced = model.encode_moments(x)
    assert calls == [2, 1, 1]
    torch.testing.assert_close(whole, sliced, rtol=1e-5, atol=1e-6)


def test_a_latent_that_is_not_a_tensor_is_refused_as_latents():
    from diffusers_mdiffae.models.autoencoders.autoencoder_vmae import check_vmae_latents

    with pytest.raises(ValueError) as e:
        check_vmae_latents([[0.0]], 4, 32, 8)
    assert str(e.value) == "latents must be a torch.Tensor, got list"


def test_save_pretrained_passes_its_options_on_and_adds_the_licence_note(tmp_path):
    make_tiny_tokenizer("vmae").save_pretrained(tmp_path / "v", variant="fp16")
    assert sorted(p.name for p in (tmp_path / "v").iterdir()) == [
        "LICENSE_NOTE.md",
        "config.json",
        "diffusion_pytorch_model.fp16.safetensors",
    ]


def test_the_vmae_attention_refuses_a_width_its_heads_do_not_divide_naming_both():
    from diffusers_mdiffae.models.mae_vit_blocks import MAEAttention

    with pytest.raises(ValueError) as e:
        MAEAttention(10, 3)
    assert str(e.value) == "width 10 is not divisible by num_heads=3"
