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


# -- a whole conversion of a tiny published snapshot --------------------------------------------

WARNING_BAR = "!" * 78


@pytest.fixture
def tiny_snapshot(tmp_path):
    from fixtures.models import make_tiny
    from test_convert import write_snapshot

    return write_snapshot(tmp_path, "mdiffae_v1", make_tiny(seed=3))


def _reported_psnr(stdout: str) -> str:
    """The PSNR as the report prints it (random tiny weights: a low value no one can write down)."""
    lines = [ln for ln in stdout.splitlines() if ln.startswith("sample image PSNR (1-step decode, float32): ")]
    assert len(lines) == 1 and lines[0].endswith(" dB")
    return lines[0].split(": ")[1][: -len(" dB")]


def test_a_conversion_reports_the_model_the_psnr_and_the_folder_written(tiny_snapshot, tmp_path, capsys):
    out = tmp_path / "converted"
    assert main([str(tiny_snapshot), str(out)]) == 0
    captured = capsys.readouterr()
    psnr = _reported_psnr(captured.out)
    # make_tiny's mdiffae_v1 (model_dim 32, one encoder block, two decoder blocks) has 124,256 parameters
    assert captured.out.splitlines() == [
        f"loaded {tiny_snapshot}: AutoencoderMDiffAE, 124,256 parameters, every tensor matched",
        f"sample image PSNR (1-step decode, float32): {psnr} dB",
        f"wrote {out}",
    ]
    assert float(psnr) < 25  # random weights: the default bar of 25 dB makes the warning fire
    assert captured.err == (
        f"{WARNING_BAR}\nWARNING: {psnr} dB is implausibly low for a trained checkpoint (expected > 25 dB).\n"
        "The tensor names may have matched the wrong layers. Run with --verify to compare against the original "
        f"code.\n{WARNING_BAR}\n"
    )
    assert (out / "diffusion_pytorch_model.safetensors").is_file()


@pytest.mark.parametrize("bar, warns", [("0", False), ("99", True)])
def test_min_psnr_moves_the_bar_of_the_warning(tiny_snapshot, tmp_path, capsys, bar, warns):
    assert main([str(tiny_snapshot), str(tmp_path / "out"), "--min-psnr", bar]) == 0
    captured = capsys.readouterr()
    psnr = _reported_psnr(captured.out)
    assert 0 < float(psnr) < 25  # so 0 keeps quiet and 99 warns, where the default 25 would warn
    expected = f"WARNING: {psnr} dB is implausibly low for a trained checkpoint (expected > {bar} dB).\n"
    assert (expected in captured.err) is warns
    assert ("WARNING" in captured.err) is warns


@pytest.mark.parametrize("dtype, short", [("float16", "F16"), ("bfloat16", "BF16")])
def test_dtype_sets_the_saved_weights_but_the_frequency_table_stays_float32(
    tiny_snapshot, tmp_path, capsys, dtype, short
):
    import logging

    from safetensors import safe_open

    out = tmp_path / "out"
    records = []
    handler = logging.Handler()
    handler.emit = records.append
    logging.getLogger("diffusers").addHandler(handler)
    try:
        assert main([str(tiny_snapshot), str(out), "--dtype", dtype]) == 0
    finally:
        logging.getLogger("diffusers").removeHandler(handler)
    assert [r.getMessage() for r in records] == []  # no diffusers warning about the cast
    with safe_open(str(out / "diffusion_pytorch_model.safetensors"), "pt") as f:
        dtypes = {k: f.get_slice(k).get_dtype() for k in f.keys()}
    # rounded to half precision the sinusoidal frequencies would drift; the model keeps them float32
    assert dtypes.pop("decoder.time_embed.freqs") == "F32"
    assert set(dtypes.values()) == {short}


def test_verify_prints_what_it_could_not_compare(tiny_snapshot, tmp_path, capsys):
    # a package without any *InferenceConfig cannot run the sampler: verify says so and still passes
    pkg = tiny_snapshot / "m_diffae" / "__init__.py"
    pkg.write_text(pkg.read_text().replace("InferenceConfig", "SamplerSettings"))
    assert main([str(tiny_snapshot), str(tmp_path / "out"), "--verify"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "verify note: m_diffae exports no *InferenceConfig; the sampler was not compared" in lines
    assert not any(ln.startswith("verify decode(") for ln in lines)
    assert any(ln.startswith("verify: passed (largest difference ") for ln in lines)


def test_an_output_folder_holding_the_snapshot_is_refused_even_with_overwrite(tmp_path, capsys):
    from fixtures.models import make_tiny
    from test_convert import write_snapshot

    out = tmp_path / "out"
    out.mkdir()
    snap = write_snapshot(out, "mdiffae_v1", make_tiny(seed=3))
    weights = (snap / "model.safetensors").read_bytes()
    assert main([str(snap), str(out), "--overwrite"]) == 2
    assert capsys.readouterr().err == (
        f"error: {out}: contains the input {snap} and would be replaced; choose another output\n"
    )
    assert (snap / "model.safetensors").read_bytes() == weights


def test_a_folder_with_several_pth_files_is_refused_naming_them(tmp_path, capsys):
    snap = tmp_path / "snap"
    snap.mkdir()
    for name in ("b.pth", "a.pth"):
        (snap / name).write_bytes(b"")
    assert main([str(snap), str(tmp_path / "out")]) == 1
    assert capsys.readouterr().err == (
        f"error: {snap} holds several checkpoints ['a.pth', 'b.pth']; pass the file to load; nothing written\n"
    )
    assert not (tmp_path / "out").exists()


def test_run_takes_a_namespace_without_the_vmae_options(tiny_snapshot, tmp_path, capsys):
    """``run`` is public: a caller's own parser need not declare the VMAE-only options."""
    import argparse

    from diffusers_mdiffae.conversion.cli import run

    out = tmp_path / "out"
    args = argparse.Namespace(
        snapshot=str(tiny_snapshot), out=str(out), verify=False, dtype="float32", overwrite=False, min_psnr=None
    )
    assert run(args) == 0
    assert (out / "config.json").is_file()
