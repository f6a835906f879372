"""``python -m diffusers_mdiffae.conversion`` (conversion/cli.py): its help and its argument refusals, pinned.

``main`` is called in-process; the help is compared with its whitespace normalised (argparse wraps
to the terminal width).
"""

import pytest

from diffusers_mdiffae.conversion.cli import main


def help_text(capsys, monkeypatch) -> str:
    monkeypatch.setenv("COLUMNS", "100")
    with pytest.raises(SystemExit) as exit_:
        main(["--help"])
    assert exit_.value.code == 0
    return " ".join(capsys.readouterr().out.split())


def test_help_names_the_module_entry_point(capsys, monkeypatch):
    text = help_text(capsys, monkeypatch)
    assert text.startswith("usage: python -m diffusers_mdiffae.conversion [-h] [--verify]")
    assert (
        "Convert a published mDiffAE / iRDiffAE / SemDisDiffAE snapshot, or an LDMAE VMAE .pth, to a diffusers "
        "folder." in text
    )


@pytest.mark.parametrize(
    "line",
    [
        "snapshot downloaded original repository folder (config.json + model.safetensors), or an LDMAE VMAE .pth",
        "out output diffusers folder (written only if every check passes)",
        "--verify run the original package shipped in the snapshot and compare outputs",
        "--dtype {float32,bfloat16,float16} dtype of the saved weights",
        "--overwrite replace OUT if it exists (only once the new one is complete)",
        "--min-psnr MIN_PSNR warn when the sample reconstruction is below this PSNR in dB (default 25; 20 for a "
        "VMAE .pth)",
        "LDMAE VMAE .pth checkpoints: --num-heads NUM_HEADS encoder attention heads (default: from the stored "
        "args.model)",
        "--decoder-num-heads DECODER_NUM_HEADS decoder attention heads (default: from args.model)",
        "--latent-stats LATENT_STATS LDMAE's latents_stats.pt: stored as latents_mean/latents_std",
    ],
)
def test_help_explains_every_argument(capsys, monkeypatch, line):
    assert line in help_text(capsys, monkeypatch)


def test_a_dtype_outside_the_choices_is_refused(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        main([str(tmp_path), str(tmp_path / "out"), "--dtype", "float64"])
    assert exit_.value.code == 2
    assert "argument --dtype: invalid choice: 'float64'" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "option, value",
    [("--num-heads", "12"), ("--decoder-num-heads", "12"), ("--latent-stats", "latents_stats.pt")],
)
def test_a_vmae_option_for_a_folder_without_a_pth_is_refused_naming_it(tmp_path, capsys, option, value):
    (tmp_path / "snap").mkdir()
    assert main([str(tmp_path / "snap"), str(tmp_path / "out"), option, value]) == 2
    assert capsys.readouterr().err == f"error: {option} applies only to an LDMAE VMAE .pth checkpoint\n"
    assert not (tmp_path / "out").exists()


def test_with_several_vmae_options_the_heads_are_named_before_the_stats(tmp_path, capsys):
    (tmp_path / "snap").mkdir()
    args = [str(tmp_path / "snap"), str(tmp_path / "out"), "--latent-stats", "s.pt", "--decoder-num-heads", "4"]
    assert main(args) == 2
    assert capsys.readouterr().err == "error: --decoder-num-heads applies only to an LDMAE VMAE .pth checkpoint\n"


@pytest.mark.parametrize("value, warns", [(float("nan"), True), (24.99, True), (25.0, False), (31.0, False)])
def test_the_implausible_psnr_warning_fires_below_the_bar_and_on_nan(capsys, value, warns):
    from diffusers_mdiffae.conversion.cli import _warn_if_implausible

    _warn_if_implausible(value, 25.0, "a trained checkpoint", "Run with --verify.")
    captured = capsys.readouterr()
    assert captured.out == ""
    bar = "!" * 78
    expected = f"{bar}\nWARNING: {value:.2f} dB is implausibly low for a trained checkpoint (expected > 25 dB).\n"
    assert captured.err == (f"{expected}Run with --verify.\n{bar}\n" if warns else "")
