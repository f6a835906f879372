"""The published packages' API (original_api.py): loading, moving and dewhitening, on tiny models."""

import pytest
import torch
from fixtures.models import make_tiny

from diffusers_mdiffae import (
    AutoencoderMDiffAE,
    AutoencoderSemDisDiffAE,
    CapacitorDiffAE,
    FCDMDiffAE,
    IRDiffAE,
    MDiffAE,
    MDiffAEV2,
)


@pytest.fixture
def recorded_load(monkeypatch):
    """``AutoencoderMDiffAE.from_pretrained`` replaced: records its arguments and the device it was moved to."""
    calls, moves = [], []
    model = make_tiny()

    def to(*args, **kwargs):
        moves.append((args, kwargs))
        return model

    model.to = to  # the instance's own ``to`` records the device

    def fake(cls, path, **kwargs):
        calls.append((path, kwargs))
        return model

    monkeypatch.setattr(AutoencoderMDiffAE, "from_pretrained", classmethod(fake))
    return calls, moves, model


def test_from_pretrained_loads_with_dtype_revision_and_cache_on_cpu_by_default(recorded_load):
    calls, moves, model = recorded_load
    api = MDiffAE.from_pretrained("org/model")
    assert api.model is model
    assert calls == [("org/model", {"torch_dtype": torch.float32, "revision": None, "cache_dir": None})]
    assert moves == [(("cpu",), {})]


def test_from_pretrained_passes_every_option_through(recorded_load):
    calls, moves, _ = recorded_load
    MDiffAE.from_pretrained("dir", device="meta", dtype=torch.bfloat16, revision="v2", cache_dir="/c")
    assert calls == [("dir", {"torch_dtype": torch.bfloat16, "revision": "v2", "cache_dir": "/c"})]
    assert moves == [(("meta",), {})]


def test_to_moves_the_wrapped_model_with_positional_and_keyword_arguments():
    api = MDiffAE(make_tiny())
    assert api.to(torch.float64) is api
    assert next(api.parameters()).dtype == torch.float64
    assert api.to(dtype=torch.float32) is api
    assert next(api.parameters()).dtype == torch.float32


def test_dewhiten_undoes_whiten_with_the_model_statistics():
    model = make_tiny(family="semdisdiffae")
    assert isinstance(model, AutoencoderSemDisDiffAE)
    api = FCDMDiffAE(model)
    z = torch.randn(1, model.config.latent_channels, 2, 2, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(api.dewhiten(z), model.dewhiten(z))
    torch.testing.assert_close(api.dewhiten(api.whiten(z)), z, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(api.dewhiten(z), z)


@pytest.mark.parametrize(
    "wrapper, family, wraps, got",
    [
        (MDiffAE, "semdisdiffae", "AutoencoderMDiffAE", "AutoencoderSemDisDiffAE"),
        (FCDMDiffAE, "mdiffae_v1", "AutoencoderSemDisDiffAE", "AutoencoderMDiffAE"),
    ],
)
def test_a_model_of_another_family_is_refused_naming_wrapper_and_both_classes(wrapper, family, wraps, got):
    with pytest.raises(TypeError) as err:
        wrapper(make_tiny(family=family))
    assert str(err.value) == f"{wrapper.__name__} wraps a {wraps}, got {got}"


def test_each_published_name_names_itself_when_refusing():
    for wrapper, wraps in ((MDiffAEV2, "AutoencoderMDiffAE"), (IRDiffAE, "AutoencoderMDiffAE")):
        with pytest.raises(TypeError) as err:
            wrapper(torch.nn.Linear(1, 1))
        assert str(err.value) == f"{wrapper.__name__} wraps a {wraps}, got Linear"
    with pytest.raises(TypeError) as err:
        CapacitorDiffAE("model.safetensors")
    assert str(err.value) == "CapacitorDiffAE wraps a AutoencoderSemDisDiffAE, got str"
