"""`mdiffae encode` / `decode` with a stand-in model: the latent file's layout, sizes, names, skips and
messages pinned (in-process, no real model)."""

import json
import types

import pytest
import torch
from fixtures.hostile import cli
from PIL import Image
from safetensors import safe_open
from safetensors.torch import save_file

from diffusers_mdiffae import cli as cli_module
from diffusers_mdiffae.skipping import SkipTally, describe_error


class FakeModel:
    dtype = torch.float64  # not the float32 the images load as: the command must cast

    def __init__(self):
        self.decode_kwargs = []

    def encode(self, x):
        assert x.dtype is torch.float64
        return types.SimpleNamespace(latent=x[:, :, ::8, ::8] * 0 + 0.5)

    def decode(self, z, **kwargs):
        assert z.dtype is torch.float64
        self.decode_kwargs.append(kwargs)
        return types.SimpleNamespace(sample=z.repeat_interleave(8, -1).repeat_interleave(8, -2).float() * 0)


@pytest.fixture
def model(monkeypatch):
    fake, calls = FakeModel(), []

    def load_model(spec, dtype):
        calls.append((spec, dtype))
        return fake

    monkeypatch.setattr(cli_module, "load_model", load_model)
    fake.calls = calls
    return fake


def _photo(path, w=16, h=16):
    Image.new("RGB", (w, h), (10, 20, 30)).save(path)
    return path


def _latents(path, tensors, meta):
    save_file(tensors, str(path), metadata={"images": json.dumps(meta)})
    return path


def test_encode_a_folder_skips_the_broken_file_and_writes_the_pinned_layout(tmp_path, capsys, model):
    src = tmp_path / "in"
    src.mkdir()
    _photo(src / "a.png", 24, 16)
    (src / "b.png").write_bytes(b"not a png")
    _photo(src / "c.png")
    out = tmp_path / "z.safetensors"
    rc, stdout, err = cli(capsys, "encode", src, out, "--dtype", "bfloat16")
    assert rc == 0
    assert model.calls == [(None, "bfloat16")]
    assert f"wrote 2 latent(s) to {out}\n" in stdout
    assert stdout.endswith(f"encoded 2, skipped 1 ({out})\n")
    assert f"skipped {src / 'b.png'}: " in err
    assert "encode: 100%" in err
    with safe_open(str(out), "pt") as f:
        assert sorted(f.keys()) == ["latent.0", "latent.1"]
        meta = f.metadata()
        assert meta["format"] == "mdiffae-latents-v1"
        assert json.loads(meta["images"]) == {
            "0": {"source": str(src / "a.png"), "height": 16, "width": 24},
            "1": {"source": str(src / "c.png"), "height": 16, "width": 16},
        }


def test_encode_one_file_has_no_tally_and_a_broken_one_fails_naming_it(tmp_path, capsys, model):
    rc, stdout, _ = cli(capsys, "encode", _photo(tmp_path / "a.png"), tmp_path / "z.safetensors")
    assert (rc, stdout) == (0, f"wrote 1 latent(s) to {tmp_path / 'z.safetensors'}\n")
    assert model.calls == [(None, "float32")]
    bad = tmp_path / "b.png"
    bad.write_bytes(b"x")
    rc, stdout, err = cli(capsys, "encode", bad, tmp_path / "y.safetensors")
    assert rc != 0 and stdout == ""
    assert err.startswith(f"error: {bad}: ")


def test_encode_a_folder_of_only_broken_files_writes_nothing(tmp_path, capsys, model):
    src = tmp_path / "in"
    src.mkdir()
    (src / "a.png").write_bytes(b"x")
    rc, _, err = cli(capsys, "encode", src, tmp_path / "z.safetensors")
    assert rc != 0
    assert f"error: {src}: nothing written, all 1 input(s) skipped" in err
    assert not (tmp_path / "z.safetensors").exists()


def test_decode_crops_to_the_stored_size_names_from_sources_and_skips_a_bad_latent(tmp_path, capsys, model):
    def z():
        return torch.zeros(3, 2, 2)

    src = _latents(
        tmp_path / "z.safetensors",
        {
            "latent.10": z(),
            "latent.2": z(),
            "latent.3": torch.full((3, 2, 2), float("nan")),
            "other.1": z(),
            "latent.x": z(),
        },
        {
            "2": {"source": "/p/two.png", "height": 16, "width": 16},
            "10": {"source": "/p/ten.png", "height": 1, "width": 1},
            "3": "junk",
        },
    )
    out = tmp_path / "out"
    rc, stdout, err = cli(capsys, "decode", src, out, "--ext", "png", "--steps", "3")
    assert rc == 0
    assert stdout == f"wrote 2, skipped 1 ({out})\n"
    assert f"skipped {src} [latent.3]: holds NaN or infinite values" in err
    assert "decode: 100%" in err
    assert model.decode_kwargs[0]["num_inference_steps"] == 3
    assert Image.open(out / "two.png").size == (16, 16)
    assert Image.open(out / "ten.png").size == (1, 1)
    assert sorted(p.name for p in out.iterdir()) == ["ten.png", "two.png"]


def test_decode_ignores_sizes_that_do_not_fit_and_one_latent_writes_one_file(tmp_path, capsys, model):
    z = torch.zeros(3, 2, 2)
    for h, w, size in [
        (0, 5, (16, 16)),
        (5, 0, (16, 16)),
        (17, 5, (16, 16)),
        (5, 17, (16, 16)),
        (16, 16, (16, 16)),
        (1, 2, (2, 1)),
        (12, "3", (16, 16)),
    ]:
        src = _latents(tmp_path / "z.safetensors", {"latent.0": z}, {"0": {"height": h, "width": w}})
        rc, stdout, _ = cli(capsys, "decode", src, tmp_path / "o.png")
        assert (rc, stdout) == (0, f"wrote {tmp_path / 'o.png'}\n")
        assert Image.open(tmp_path / "o.png").size == size, (h, w)
    z = torch.zeros(3, 3, 2)  # not square: the height is checked against the height
    src = _latents(tmp_path / "z.safetensors", {"latent.0": z}, {"0": {"height": 20, "width": 16}})
    cli(capsys, "decode", src, tmp_path / "o.png")
    assert Image.open(tmp_path / "o.png").size == (16, 20)


def test_decode_refusals_are_pinned(tmp_path, capsys, model):
    rc, _, err = cli(capsys, "decode", tmp_path, tmp_path / "o.png")
    assert err == f"error: {tmp_path}: is a folder; decode takes the .safetensors file written by `mdiffae encode`\n"
    rc, _, err = cli(capsys, "decode", tmp_path / "none.safetensors", tmp_path / "o.png")
    assert err == f"error: {tmp_path / 'none.safetensors'}: no such file\n"
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x00" * 3)
    rc, _, err = cli(capsys, "decode", bad, tmp_path / "o.png")
    assert err.startswith(f"error: {bad}: not a latent file written by `mdiffae encode` (")
    assert "(None)" not in err
    src = _latents(tmp_path / "e.safetensors", {"other.0": torch.zeros(3, 2, 2)}, {})
    rc, _, err = cli(capsys, "decode", src, tmp_path / "o.png")
    assert err == f"error: {src}: holds no 'latent.N' tensors; not a latent file written by `mdiffae encode`\n"
    two = _latents(
        tmp_path / "two.safetensors", {"latent.0": torch.zeros(3, 2, 2), "latent.1": torch.ones(3, 2, 2)}, {}
    )
    (tmp_path / "f.png").write_bytes(b"")
    rc, _, err = cli(capsys, "decode", two, tmp_path / "f.png")
    assert err == f"error: {tmp_path / 'f.png'}: is a file, but {two} holds 2 latents; name an output folder\n"
    assert rc != 0 and model.calls == []


def test_decode_rejects_integer_latents_with_the_pinned_sentence(tmp_path, capsys, model):
    src = _latents(tmp_path / "z.safetensors", {"latent.0": torch.zeros(3, 2, 2, dtype=torch.int32)}, {})
    rc, _, err = cli(capsys, "decode", src, tmp_path / "o.png")
    assert err == (
        f"error: {src} [latent.0]: dtype int32: latents must be floating point "
        "(this is not a latent written by `mdiffae encode`)\n"
    )


def test_decode_with_metadata_that_is_not_an_object_warns_and_uses_plain_names(tmp_path, capsys, model):
    src = tmp_path / "z.safetensors"
    save_file(
        {"latent.0": torch.zeros(3, 2, 2), "latent.1": torch.zeros(3, 2, 2)}, str(src), metadata={"images": "[1]"}
    )
    rc, stdout, err = cli(capsys, "decode", src, tmp_path / "out")
    assert rc == 0
    assert f"{src}: its 'images' metadata is not valid JSON; sizes and names are not restored" in err


def test_describe_error_pinned():
    assert describe_error(FileNotFoundError(2, "No such file", "/x")) == "/x: No such file"
    assert describe_error(FileNotFoundError(2, None, "/x")) == "/x: [Errno 2] None: '/x'"
    assert describe_error(OSError("plain")) == "OSError: plain"
    assert describe_error(MemoryError()) == "out of memory (try smaller inputs, --dtype bfloat16, or a smaller batch)"
    assert describe_error(RuntimeError()) == "RuntimeError"
    assert describe_error(RuntimeError("a\nb")) == "RuntimeError: a; b"
    assert describe_error(ValueError("v")) == "v"


def test_skip_records_the_name_and_the_one_line_reason():
    logged = []
    tally = SkipTally(log=logged.append)
    tally.skip("f.png", "bad\nworse")
    assert tally.skipped == [("f.png", "bad; worse")]
    assert logged == ["skipped f.png: bad; worse"]
