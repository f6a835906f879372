"""``strict_from_pretrained`` pinned with a stand-in class and loader: what reaches diffusers, every refusal."""

import pytest
import torch
from fixtures.errors import error_message

from diffusers_mdiffae.models.hub import strict_from_pretrained


class Tiny(torch.nn.Module):
    config = {"_class_name": "Tiny", "width": 2}
    config_kwargs = None

    def __init__(self, width: int = 2):
        super().__init__()
        self.w = torch.nn.Parameter(torch.ones(width))

    @classmethod
    def load_config(cls, path, **kwargs):
        cls.config_kwargs = kwargs
        return dict(cls.config)


def _loader(model=None, info=None):
    seen = {}

    def load(path, **kwargs):
        seen.update(kwargs, path=path)
        return (model if model is not None else Tiny()), (info or {})

    return load, seen


@pytest.fixture(autouse=True)
def _reset():
    Tiny.config = {"_class_name": "Tiny", "width": 2}
    Tiny.config_kwargs = None


def test_only_set_hub_options_reach_load_config_and_every_kwarg_reaches_the_loader():
    load, seen = _loader()
    kwargs = {"subfolder": "vae", "revision": None, "cache_dir": "/c", "extra": 7}
    model, info = strict_from_pretrained(Tiny, load, "p", kwargs)
    assert Tiny.config_kwargs == {"subfolder": "vae", "cache_dir": "/c"}
    assert seen == {
        "path": "p",
        "output_loading_info": True,
        "subfolder": "vae",
        "revision": None,
        "cache_dir": "/c",
        "extra": 7,
    }
    assert isinstance(model, Tiny) and info == {}


def test_a_config_without_class_name_loads_unless_named_only():
    Tiny.config = {"width": 2}
    load, _ = _loader()
    strict_from_pretrained(Tiny, load, "p", {})
    with pytest.raises(ValueError) as e:
        strict_from_pretrained(Tiny, load, "p", {}, True, " folder (hint)")
    assert str(e.value) == "p holds a non-diffusers config, not a Tiny folder (hint)"


def test_another_class_is_refused_even_without_named_only():
    Tiny.config = {"_class_name": "Other", "width": 2}
    with pytest.raises(ValueError) as e:
        strict_from_pretrained(Tiny, _loader()[0], "p", {})
    assert str(e.value) == "p holds a Other config, not a Tiny"


def test_a_bad_config_names_the_folder_config_json():
    Tiny.config = {"_class_name": "Tiny", "width": "2"}
    with pytest.raises(ValueError) as e:
        strict_from_pretrained(Tiny, _loader()[0], "p", {})
    assert str(e.value) == "p config.json: width must be an int, got '2' (str)"


def test_upcast_loads_in_float32_then_casts_to_the_requested_dtype():
    load, seen = _loader()
    model, _ = strict_from_pretrained(Tiny, load, "p", {"torch_dtype": torch.bfloat16}, upcast=True)
    assert seen["torch_dtype"] is torch.float32
    assert model.w.dtype is torch.bfloat16


def test_upcast_without_a_dtype_passes_none_and_without_upcast_the_dtype_goes_through():
    load, seen = _loader()
    strict_from_pretrained(Tiny, load, "p", {}, upcast=True)
    assert "torch_dtype" not in seen
    load, seen = _loader()
    model, _ = strict_from_pretrained(Tiny, load, "p", {"torch_dtype": torch.float16})
    assert seen["torch_dtype"] is torch.float16
    assert model.w.dtype is torch.float32  # the stand-in loader ignores it; no cast afterwards


def test_loading_info_problems_name_the_path_and_class():
    load, _ = _loader(info={"missing_keys": ["b", "a"]})
    with pytest.raises(ValueError) as e:
        strict_from_pretrained(Tiny, load, "p", {})
    assert str(e.value) == "checkpoint p does not match Tiny(config):\n  missing keys (2): a, b"


def test_non_finite_weights_are_refused_listing_the_first_ten():
    bad = torch.nn.Module()
    for i in range(11):
        bad.register_parameter(f"t{i:02d}", torch.nn.Parameter(torch.tensor([float("nan")])))
    with pytest.raises(ValueError) as e:
        strict_from_pretrained(Tiny, _loader(model=bad)[0], "p", {})
    names = ", ".join(f"t{i:02d}" for i in range(10))
    assert str(e.value) == f"checkpoint p has NaN or infinite values in 11 tensor(s): {names}"


# -- validate_config: the type rules, key by key ----------------------------------------------------


def _refusal(config) -> str:
    from diffusers_mdiffae import AutoencoderMDiffAE
    from diffusers_mdiffae.models.hub import validate_config

    return error_message(validate_config, AutoencoderMDiffAE, config)


def test_none_is_refused_for_a_key_whose_default_is_not_none():
    assert _refusal({"latent_channels": None}) == "config: latent_channels must be an int, got None (NoneType)"


def test_an_accepted_none_does_not_end_the_check_of_the_keys_after_it():
    config = {"latents_mean": None, "latents_std": None, "latent_channels": "64"}
    assert _refusal(config) == "config: latent_channels must be an int, got '64' (str)"


def test_a_string_key_given_a_number_is_refused_asking_for_a_string():
    assert _refusal({"pdg_mode": 3}) == "config: pdg_mode must be a string, got 3 (int)"


def test_none_passes_for_a_key_annotated_optional_even_with_a_default():
    """decoder_seed is Optional[int] = 0: None means unseeded, not a wrong type."""
    from diffusers_mdiffae import AutoencoderMDiffAE
    from diffusers_mdiffae.models.hub import validate_config

    validate_config(AutoencoderMDiffAE, {"decoder_seed": None})
    assert _refusal({"decoder_seed": "7"}) == "config: decoder_seed must be an int, got '7' (str)"


def test_a_sequence_key_given_something_else_is_refused_asking_for_a_list():
    assert _refusal({"block_out_channels": 896}) == "config: block_out_channels must be a list, got 896 (int)"


def test_a_state_dict_built_without_a_source_is_called_the_checkpoint_in_refusals():
    from fixtures.models import make_tiny, make_tiny_tokenizer, public_config

    from diffusers_mdiffae.conversion.layouts import CheckpointError
    from diffusers_mdiffae.conversion.vmae_pth import build_vmae
    from diffusers_mdiffae.models.hub import build_from_state_dict

    tiny = make_tiny()
    config = public_config(tiny.config)
    with pytest.raises(CheckpointError) as e:
        build_from_state_dict("AutoencoderMDiffAE", config, {**tiny.state_dict(), "extra.weight": torch.zeros(1)})
    assert str(e.value).startswith("checkpoint does not match AutoencoderMDiffAE(")
    vmae = make_tiny_tokenizer("vmae")
    with pytest.raises(CheckpointError) as e:
        build_vmae(
            {**vmae.state_dict(), "extra.weight": torch.zeros(1)},
            public_config(vmae.config),
        )
    assert str(e.value).startswith("checkpoint does not match AutoencoderVMAE(")


def test_a_folder_without_a_readable_tokenizer_config_is_not_a_tokenizer_snapshot(tmp_path):
    from diffusers_mdiffae.models.hub import is_tokenizer_snapshot

    assert not is_tokenizer_snapshot(tmp_path)  # no config.json
    (tmp_path / "config.json").write_text("{not json")
    assert not is_tokenizer_snapshot(tmp_path)


def test_a_mistyped_config_value_of_a_state_dict_is_refused_naming_the_source_twice():
    from diffusers_mdiffae.conversion.layouts import CheckpointError
    from diffusers_mdiffae.models.hub import build_from_state_dict

    with pytest.raises(CheckpointError) as e:
        build_from_state_dict("AutoencoderMDiffAE", {"patch_size": True}, {}, source="w.safetensors")
    assert str(e.value) == (
        "w.safetensors: config describes a model this package cannot build: "
        "w.safetensors config: patch_size must be an int, got True (bool)"
    )


def test_weights_on_the_meta_device_are_not_counted_as_nonfinite():
    from diffusers_mdiffae.models.hub import nonfinite_tensors

    layer = torch.nn.Linear(2, 2)
    layer.weight.data[0, 0] = float("nan")
    assert nonfinite_tensors(layer) == ["weight"]
    with torch.device("meta"):
        assert nonfinite_tensors(torch.nn.Linear(2, 2)) == []
