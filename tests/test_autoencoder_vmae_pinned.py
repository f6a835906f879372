"""AutoencoderVMAE's own loading and saving (from_pretrained / save_pretrained), pinned.

The tiny VMAE of ``fixtures.models`` written as an LDMAE ``.pth`` (``write_vmae_pth``) or saved as a
diffusers folder; each test checks what a caller sees: the model or ``(model, info)``, the files in
the folder, the exact refusal sentences.
"""

import json
import locale

import pytest
import torch
from fixtures.models import make_tiny_tokenizer, write_vmae_pth

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
