"""save_pretrained / from_pretrained / push_to_hub, offline (the Hub is replaced at the huggingface_hub boundary)."""

import json
import logging

import pytest
import torch
from fixtures.models import images, make_tiny
from safetensors.torch import load_file, save_file

from diffusers_mdiffae import AutoencoderMDiffAE


def params_equal(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def recon(model, x):
    with torch.no_grad():
        return model.decode(model.encode(x).latent, num_inference_steps=2, pdg_strength=1.2).sample


def test_save_and_load_is_bit_identical(tmp_path, tiny):
    tiny.save_pretrained(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "README.md",
        "config.json",
        "diffusion_pytorch_model.safetensors",
    ]
    loaded = AutoencoderMDiffAE.from_pretrained(tmp_path)
    assert params_equal(tiny, loaded)
    assert dict(loaded.config)["model_dim"] == 32
    x = images(1, 32, 48)
    assert torch.equal(recon(tiny, x), recon(loaded, x))


def test_reload_logs_no_unexpected_config_keys(tmp_path, tiny, caplog):
    tiny.save_pretrained(tmp_path)
    with caplog.at_level(logging.WARNING):
        AutoencoderMDiffAE.from_pretrained(tmp_path)
    assert "not expected" not in caplog.text


def test_sampler_settings_in_config_survive_the_round_trip(tmp_path):
    model = make_tiny(decoder_num_inference_steps=3, decoder_pdg_strength=1.1, decoder_seed=42, log_change_high=0.5)
    model.save_pretrained(tmp_path)
    loaded = AutoencoderMDiffAE.from_pretrained(tmp_path)
    assert loaded.config.decoder_num_inference_steps == 3 and loaded.config.decoder_seed == 42
    assert loaded.scheduler.config.log_change_high == 0.5 and loaded.scheduler.config.pdg_strength == 1.1
    z = torch.randn(1, 64, 2, 2)
    with torch.no_grad():
        assert torch.equal(model.decode(z).sample, loaded.decode(z).sample)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("low_cpu_mem_usage", [True, False])
def test_from_pretrained_torch_dtype(tmp_path, tiny, dtype, low_cpu_mem_usage):
    tiny.save_pretrained(tmp_path)
    loaded = AutoencoderMDiffAE.from_pretrained(tmp_path, torch_dtype=dtype, low_cpu_mem_usage=low_cpu_mem_usage)
    assert loaded.dtype == dtype
    assert all(p.dtype == dtype for p in loaded.parameters())
    with torch.no_grad():
        out = loaded.reconstruct(images(1, 32, 32).to(dtype))
    assert out.dtype == dtype and torch.isfinite(out.float()).all()


def test_variant_round_trip_and_missing_variant_is_an_error(tmp_path, tiny):
    tiny.to(torch.float16).save_pretrained(tmp_path, variant="fp16")
    assert (tmp_path / "diffusion_pytorch_model.fp16.safetensors").is_file()
    loaded = AutoencoderMDiffAE.from_pretrained(tmp_path, variant="fp16", torch_dtype=torch.float16)
    assert params_equal(tiny, loaded)
    with pytest.raises(OSError):
        AutoencoderMDiffAE.from_pretrained(tmp_path)


def test_subfolder(tmp_path, tiny):
    tiny.save_pretrained(tmp_path / "vae")
    assert params_equal(tiny, AutoencoderMDiffAE.from_pretrained(tmp_path, subfolder="vae"))


def test_sharded_checkpoint(tmp_path, tiny):
    tiny.save_pretrained(tmp_path, max_shard_size="100KB")
    assert (tmp_path / "diffusion_pytorch_model.safetensors.index.json").is_file()
    assert len(list(tmp_path.glob("diffusion_pytorch_model-*.safetensors"))) > 1
    assert params_equal(tiny, AutoencoderMDiffAE.from_pretrained(tmp_path))


def test_missing_or_extra_tensor_is_refused_with_names(tmp_path, tiny):
    tiny.save_pretrained(tmp_path)
    path = tmp_path / "diffusion_pytorch_model.safetensors"
    sd = load_file(path)
    sd.pop("decoder.mask_feature")
    sd["decoder.not_a_layer.weight"] = torch.zeros(2)
    save_file(sd, path)
    with pytest.raises(
        ValueError,
        match=r"(?s)missing keys \(1\): decoder.mask_feature.*unexpected keys \(1\): decoder.not_a_layer.weight",
    ):
        AutoencoderMDiffAE.from_pretrained(tmp_path)


def test_checkpoint_of_another_shape_is_refused(tmp_path):
    make_tiny().save_pretrained(tmp_path)
    cfg = json.loads((tmp_path / "config.json").read_text())
    cfg["model_dim"] = 48
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    with pytest.raises((ValueError, RuntimeError), match="(?i)size|shape|mismatch"):
        AutoencoderMDiffAE.from_pretrained(tmp_path)


def test_model_card_is_written_on_save_and_not_overwritten(tmp_path, tiny):
    tiny.save_pretrained(tmp_path)
    card = (tmp_path / "README.md").read_text()
    assert card.startswith("---\nlibrary_name: diffusers") and "mdiffae" in card and "AutoencoderMDiffAE" in card
    (tmp_path / "README.md").write_text("my own card")
    tiny.save_pretrained(tmp_path)
    assert (tmp_path / "README.md").read_text() == "my own card"


class FakeHub:
    """Stands in for huggingface_hub.HfApi's network methods and records the upload."""

    def __init__(self, monkeypatch):
        import huggingface_hub

        self.created, self.uploaded, self.tokens = [], [], []
        hub = self

        class Repo:
            def __init__(self, repo_id):
                self.repo_id = repo_id

        def create_repo(api, repo_id, **kw):
            hub.created.append((repo_id, kw))
            hub.tokens.append(api.token)
            return Repo(repo_id)

        def upload_folder(api, *, repo_id, folder_path, path_in_repo=None, **kw):
            import os

            files = {}
            for root, _, names in os.walk(folder_path):
                for n in names:
                    full = os.path.join(root, n)
                    with open(full, "rb") as f:
                        files[os.path.relpath(full, folder_path)] = f.read()
            hub.uploaded.append((repo_id, path_in_repo, files, kw))
            return "https://hub.invalid/commit/0"

        monkeypatch.setattr(huggingface_hub.HfApi, "create_repo", create_repo)
        monkeypatch.setattr(huggingface_hub.HfApi, "upload_folder", upload_folder)


def test_push_to_hub_uploads_weights_config_and_card(monkeypatch, tmp_path, tiny):
    hub = FakeHub(monkeypatch)
    tiny.push_to_hub("me/mdiffae-tiny", private=True)
    assert hub.created == [("me/mdiffae-tiny", {"private": True, "exist_ok": True})]
    repo_id, sub, files, _ = hub.uploaded[0]
    assert repo_id == "me/mdiffae-tiny" and sub is None
    assert sorted(files) == ["README.md", "config.json", "diffusion_pytorch_model.safetensors"]
    assert b"library_name: diffusers" in files["README.md"]
    # What was uploaded loads back to the same weights.
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    assert params_equal(tiny, AutoencoderMDiffAE.from_pretrained(tmp_path))


def test_push_via_save_pretrained_and_into_a_subfolder(monkeypatch, tmp_path, tiny):
    hub = FakeHub(monkeypatch)
    tiny.save_pretrained(tmp_path / "local", push_to_hub=True, repo_id="me/pushed")
    tiny.push_to_hub("me/pipeline", subfolder="vae")
    assert [u[0] for u in hub.uploaded] == ["me/pushed", "me/pipeline"]
    assert hub.uploaded[1][1] == "vae" and "README.md" not in hub.uploaded[1][2]
    assert (tmp_path / "local" / "config.json").is_file()


def test_save_pretrained_hands_every_push_option_to_the_push(monkeypatch, tmp_path, tiny):
    hub, cards = FakeHub(monkeypatch), FakeCards(monkeypatch)
    options = {"commit_message": "mine", "private": True, "token": "hf_t", "create_pr": True}
    tiny.save_pretrained(tmp_path / "local", push_to_hub=True, repo_id="me/opts", **options)
    assert hub.created == [("me/opts", {"private": True, "exist_ok": True})] and hub.tokens == ["hf_t"]
    assert hub.uploaded[0][3] == {"commit_message": "mine", "create_pr": True} and cards.tokens == ["hf_t"]


def test_save_pretrained_pushes_to_the_folders_name_and_in_its_variant_unless_told(monkeypatch, tmp_path, tiny):
    hub, _ = FakeHub(monkeypatch), FakeCards(monkeypatch)
    tiny.save_pretrained(f"{tmp_path / 'my-vae'}/", push_to_hub=True, variant="ema")  # a trailing slash too
    repo_id, _, files, _ = hub.uploaded[0]
    assert repo_id == "my-vae" and "diffusion_pytorch_model.ema.safetensors" in files


class FakeCards:
    """The Hub's README.md for ``ModelCard.load`` (diffusers' card helpers read it through huggingface_hub)."""

    def __init__(self, monkeypatch):
        from huggingface_hub import ModelCard
        from huggingface_hub.errors import EntryNotFoundError

        self.text, self.tokens = None, []
        cards = self

        def load(cls, repo_id_or_path, **kw):
            cards.tokens.append(kw.get("token"))
            if cards.text is None:
                raise EntryNotFoundError("no README.md")
            return ModelCard(cards.text)

        monkeypatch.setattr(ModelCard, "load", classmethod(load))


def test_a_card_edited_on_the_hub_survives_a_second_push(monkeypatch, tiny):
    hub, cards = FakeHub(monkeypatch), FakeCards(monkeypatch)
    tiny.push_to_hub("me/card")
    first = hub.uploaded[0][2]["README.md"].decode()
    assert "library_name: diffusers" in first and "AutoencoderMDiffAE.from_pretrained" in first
    edited = first.replace("A diffusion autoencoder of the mDiffAE family", "My own words, edited on the Hub")
    cards.text = edited
    tiny.push_to_hub("me/card")
    second = hub.uploaded[1][2]["README.md"].decode()
    assert "My own words, edited on the Hub" in second
    assert second.count("- diffusers_mdiffae") == 1  # our tags are not added twice


def test_push_to_hub_defaults_name_the_class_in_the_commit_and_open_no_pr(monkeypatch, tiny):
    hub, cards = FakeHub(monkeypatch), FakeCards(monkeypatch)
    tiny.push_to_hub("me/defaults")
    _, _, files, kw = hub.uploaded[0]
    assert kw == {"commit_message": "Upload AutoencoderMDiffAE", "create_pr": False}
    assert hub.tokens == [None] and cards.tokens == [None]
    assert "diffusion_pytorch_model.safetensors" in files


def test_push_to_hub_passes_token_variant_format_message_and_pr(monkeypatch, tiny):
    hub, cards = FakeHub(monkeypatch), FakeCards(monkeypatch)
    tiny.push_to_hub(
        "me/options", commit_message="mine", token="hf_test", create_pr=True, safe_serialization=False, variant="ema"
    )
    _, _, files, kw = hub.uploaded[0]
    assert kw == {"commit_message": "mine", "create_pr": True}
    assert hub.tokens == ["hf_test"] and cards.tokens == ["hf_test"]
    assert sorted(files) == ["README.md", "config.json", "diffusion_pytorch_model.ema.bin"]
