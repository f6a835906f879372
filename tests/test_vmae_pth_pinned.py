"""Reading LDMAE's ``.pth`` files (conversion/vmae_pth.py), pinned: the stored args, the entry picked,
and the refusal sentences whole.

The tensors are the VMAE parity fixture's (``test_vmae.FIXTURE``); the files are written with
``torch.save`` the way LDMAE's training script and hand-made re-saves lay them out.
"""

from __future__ import annotations

import argparse
import functools
import zipfile

import pytest
import torch
from fixtures.errors import error_message
from safetensors.torch import load_file
from test_vmae import FIXTURE, HEADS

from diffusers_mdiffae.conversion.layouts import CheckpointError
from diffusers_mdiffae.conversion.vmae_pth import (
    build_vmae,
    config_from_state_dict,
    read_vmae_pth,
    select_state_dict,
)


@pytest.fixture(scope="module")
def state():
    return {k: v for k, v in load_file(str(FIXTURE)).items() if not k.startswith("case.")}


refusal = functools.partial(error_message, error=CheckpointError)


@pytest.mark.parametrize(
    "args, read",
    [
        (
            argparse.Namespace(model="vmae_fixture_tiny", input_size=32),
            {"model": "vmae_fixture_tiny", "input_size": 32},
        ),
        ({"model": "mae_for_ldmae_f8d16_prev", "epochs": 3}, {"model": "mae_for_ldmae_f8d16_prev", "epochs": 3}),
        (["not", "args"], None),
        (None, None),
    ],
)
def test_stored_args_are_read_from_a_namespace_or_a_dict(state, tmp_path, args, read):
    path = tmp_path / "c.pth"
    torch.save({"model": state, "args": args}, path)
    assert read_vmae_pth(path).args == read


def test_a_bare_state_dict_file_has_no_args_and_its_entry_is_the_top_level(state, tmp_path):
    path = tmp_path / "weights.pth"
    torch.save(dict(state), path)
    ckpt = read_vmae_pth(path)
    assert ckpt.args is None and ckpt.entry == "(top level)" and ckpt.state_dict.keys() == state.keys()


def test_the_state_dict_entry_is_used_when_there_is_no_model_entry(state, tmp_path):
    path = tmp_path / "c.pth"
    torch.save({"state_dict": {f"module.{k}": v for k, v in state.items()}, "epoch": 1}, path)
    ckpt = read_vmae_pth(path)
    assert ckpt.entry == "state_dict" and ckpt.state_dict.keys() == state.keys()


def test_without_a_source_the_refusal_says_checkpoint():
    assert refusal(select_state_dict, [1, 2]) == "checkpoint: holds a list, not a checkpoint dictionary"
    assert (
        refusal(select_state_dict, {"epoch": 3})
        == "checkpoint: entry '(top level)' holds no tensors (keys: ['epoch'])"
    )


def test_a_tensorless_checkpoint_lists_its_first_12_keys_sorted():
    obj = {f"k{i:02d}": i for i in range(15)}
    assert refusal(select_state_dict, obj, "c.pth") == (
        f"c.pth: entry '(top level)' holds no tensors (keys: {[f'k{i:02d}' for i in range(12)]})"
    )


def test_a_mixed_entry_lists_its_first_12_other_values_sorted():
    obj = {"model": {"w": torch.zeros(1), **{f"x{i:02d}": i for i in range(14)}}}
    assert refusal(select_state_dict, obj, "c.pth") == (
        f"c.pth: entry 'model' mixes tensors with other values: {[f'x{i:02d}' for i in range(12)]}"
    )


@pytest.mark.parametrize(
    "args, known",
    [
        (None, "the checkpoint stores no args.model"),
        ({"input_size": 32}, "the checkpoint stores no args.model"),
        ({"model": "mae_vit_huge"}, "the stored args name factory 'mae_vit_huge'"),
    ],
)
def test_unknown_head_counts_are_refused_saying_what_the_args_name(state, args, known):
    from diffusers_mdiffae.conversion.vmae_pth import FACTORY_HEADS

    assert refusal(config_from_state_dict, state, args, {}) == (
        f"cannot tell the attention head counts from the tensors and {known}, which is not one of "
        f"{sorted(FACTORY_HEADS)}; pass num_heads=... and decoder_num_heads=... "
        "(--num-heads / --decoder-num-heads on the command line)"
    )
    assert refusal(config_from_state_dict, state, args, {"num_heads": 2}).startswith("cannot tell the attention")
    config = config_from_state_dict(state, args, HEADS)
    assert (config["num_heads"], config["decoder_num_heads"]) == (2, 4)


def test_both_torch_files_are_read_weights_only_whatever_the_torch_default(state, tmp_path, monkeypatch):
    """torch before 2.6 unpickles code unless ``weights_only=True`` is passed: it must be, every time."""
    from diffusers_mdiffae.conversion import vmae_pth

    calls = []
    real_load = torch.load

    def recording_load(*args, **kwargs):
        calls.append(kwargs)
        return real_load(*args, **kwargs)

    monkeypatch.setattr(torch, "load", recording_load)
    torch.save({"model": state}, tmp_path / "c.pth")
    torch.save({"mean": torch.zeros(4), "std": torch.ones(4)}, tmp_path / "latents_stats.pt")
    read_vmae_pth(tmp_path / "c.pth")
    vmae_pth.load_latent_stats(tmp_path / "latents_stats.pt")
    assert [c.get("weights_only") for c in calls] == [True, True]
    assert [c.get("map_location") for c in calls] == ["cpu", "cpu"]


def test_loading_a_mismatching_pth_names_the_file_and_its_entry(tmp_path):
    from fixtures.models import make_tiny_tokenizer

    from diffusers_mdiffae.conversion.vmae_pth import load_vmae_pth

    pth = tmp_path / "extra.pth"
    torch.save({"model": {**make_tiny_tokenizer("vmae").state_dict(), "extra.weight": torch.zeros(2)}}, pth)
    message = error_message(load_vmae_pth, pth, error=CheckpointError, num_heads=12, decoder_num_heads=12)
    assert message.startswith(f"{pth} (entry 'model') does not match AutoencoderVMAE({{")
    assert "extra.weight" in message


def test_a_pth_holding_no_dictionary_is_refused_naming_the_file(tmp_path):
    path = tmp_path / "list.pth"
    torch.save([torch.zeros(1)], path)
    assert refusal(read_vmae_pth, path) == f"{path}: holds a list, not a checkpoint dictionary"


def test_a_zip_that_is_not_a_torch_checkpoint_is_refused_with_torchs_reason(tmp_path):
    path = tmp_path / "notes.pth"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("readme.txt", "not tensors")
    with pytest.raises(RuntimeError) as torch_error:  # torch's own words, which the refusal passes on
        torch.serialization.get_unsafe_globals_in_checkpoint(str(path))
    assert refusal(read_vmae_pth, path) == f"{path}: not a torch checkpoint ({torch_error.value})"


def test_every_unsafe_global_of_a_zip_checkpoint_is_listed_not_just_the_first(tmp_path):
    import datetime
    import fractions

    # the weights-only unpickler would stop at the first; the header check names them all
    path = tmp_path / "two.pth"
    torch.save({"model": {"w": torch.zeros(1)}, "a": datetime.date(2024, 1, 1), "b": fractions.Fraction(1, 2)}, path)
    assert refusal(read_vmae_pth, path).startswith(
        f"{path}: refused to unpickle: it references ['datetime.date', 'fractions.Fraction']. "
    )


@pytest.mark.parametrize("error", [RuntimeError, EOFError, ValueError, OSError])
def test_a_failed_torch_load_is_refused_naming_the_file_and_the_error_type(state, tmp_path, monkeypatch, error):
    path = tmp_path / "c.pth"
    torch.save({"model": state}, path)

    def failing_load(*args, **kwargs):
        raise error("storage gone")

    monkeypatch.setattr(torch, "load", failing_load)
    assert refusal(read_vmae_pth, path) == (
        f"{path}: cannot read it as a torch checkpoint ({error.__name__}: storage gone)"
    )


def test_a_built_model_trains_everything_but_its_two_position_tables(state):
    model = build_vmae(state, config_from_state_dict(state, None, HEADS))
    frozen = {name for name, p in model.named_parameters() if not p.requires_grad}
    assert frozen == {"pos_embed", "decoder_pos_embed"}
