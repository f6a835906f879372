"""Convert a published snapshot (``config.json`` + ``model.safetensors``) to a diffusers folder.

    python -m diffusers_mdiffae.conversion SNAPSHOT_DIR OUT_DIR [--verify] [--dtype float32]
    python -m diffusers_mdiffae.conversion vmaef8d16.pth OUT_DIR [--latent-stats latents_stats.pt]

An LDMAE VMAE training checkpoint (a ``.pth`` file, or a folder holding one and no ``config.json``)
is converted to :class:`~diffusers_mdiffae.AutoencoderVMAE` by
:mod:`diffusers_mdiffae.conversion.vmae_pth`: weights-only unpickling (a pickle that would run code
is refused), training-only tensors dropped, strict matching; ``--verify`` is not available there
(no original code ships with a ``.pth``; parity is pinned by the test fixture).

Nothing is written unless every check passes: strict tensor matching (each problem listed by
name and shape), finite weights, optional parity with the original package shipped inside the
snapshot (``--verify``), and a plausibility PSNR on the bundled sample photo. The output folder
appears by an atomic rename.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Optional, Sequence

DTYPES = ("float32", "bfloat16", "float16")


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument(
        "snapshot",
        help="downloaded original repository folder (config.json + model.safetensors), or an LDMAE VMAE .pth",
    )
    parser.add_argument("out", help="output diffusers folder (written only if every check passes)")
    parser.add_argument(
        "--verify", action="store_true", help="run the original package shipped in the snapshot and compare outputs"
    )
    parser.add_argument("--dtype", choices=DTYPES, default="float32", help="dtype of the saved weights")
    parser.add_argument(
        "--overwrite", action="store_true", help="replace OUT if it exists (only once the new one is complete)"
    )
    parser.add_argument(
        "--min-psnr",
        type=float,
        default=None,
        help="warn when the sample reconstruction is below this PSNR in dB (default 25; 20 for a VMAE .pth)",
    )
    vmae = parser.add_argument_group("LDMAE VMAE .pth checkpoints")
    vmae.add_argument(
        "--num-heads", type=int, default=None, help="encoder attention heads (default: from the stored args.model)"
    )
    vmae.add_argument(
        "--decoder-num-heads", type=int, default=None, help="decoder attention heads (default: from args.model)"
    )
    vmae.add_argument(
        "--latent-stats", default=None, help="LDMAE's latents_stats.pt: stored as latents_mean/latents_std"
    )
    return parser


def _error(message) -> None:
    print("error: " + "; ".join(line.strip() for line in str(message).splitlines() if line.strip()), file=sys.stderr)


def _warn_if_implausible(value: float, min_psnr: float, what: str, hint: str) -> None:
    """The loud stderr warning when the sample image decodes worse than ``what`` ever would.

    NaN warns too: a reconstruction that went NaN is the clearest sign of a wrong reading.
    """
    if value >= min_psnr:
        return
    bar = "!" * 78
    print(
        f"{bar}\nWARNING: {value:.2f} dB is implausibly low for {what} (expected > {min_psnr:.0f} dB).\n{hint}\n{bar}",
        file=sys.stderr,
    )


def _save(model, out: Path, args) -> None:
    """Write ``model`` in ``--dtype`` to the folder ``out``, whole or not at all."""
    import torch

    from ..atomic import atomic_directory

    with atomic_directory(out, overwrite=args.overwrite) as tmp:
        # torch's own .to: ModelMixin.to warns on every dtype cast about an empty fp32 module list
        torch.nn.Module.to(model, getattr(torch, args.dtype)).save_pretrained(tmp)


def run(args) -> int:
    from ..models.hub import convert_original_snapshot
    from ..outputs import OutputError, check_output_not_input
    from ..verify import PLAUSIBLE_PSNR_DB, VERIFY_TOLERANCE, sample_psnr, verify_against_original
    from .layouts import CheckpointError
    from .vmae_pth import find_vmae_pth

    out, snapshot = Path(args.out), Path(args.snapshot)
    try:
        check_output_not_input(out, [snapshot], replaces_folder=True)
    except OutputError as e:
        _error(e)
        return 2
    if out.exists() and not args.overwrite:
        _error(f"{out}: exists; pass --overwrite to replace it")
        return 2
    vmae_opts = [o for o in ("num_heads", "decoder_num_heads", "latent_stats") if getattr(args, o, None) is not None]
    try:
        pth = find_vmae_pth(snapshot)
    except CheckpointError as e:
        _error(f"{e}; nothing written")
        return 1
    if pth is not None:
        return run_vmae(args, pth, out)
    if vmae_opts:
        _error(f"--{vmae_opts[0].replace('_', '-')} applies only to an LDMAE VMAE .pth checkpoint")
        return 2
    min_psnr = PLAUSIBLE_PSNR_DB if args.min_psnr is None else args.min_psnr
    try:
        model = convert_original_snapshot(snapshot)
        print(
            f"loaded {snapshot}: {type(model).__name__}, {model.num_parameters():,} parameters, every tensor matched"
        )
        if args.verify:
            result = verify_against_original(snapshot, model)
            for name, d in result.diffs.items():
                print(f"verify {name}: max |original - converted| = {d:.3e}")
            for note in result.notes:
                print(f"verify note: {note}")
            if not result.passed():
                _error(
                    f"{snapshot}: verification against {result.package} failed (largest difference "
                    f"{result.max_diff:.3e}, tolerance {VERIFY_TOLERANCE:.0e}); nothing written"
                )
                return 1
            print(f"verify: passed (largest difference {result.max_diff:.3e} < {VERIFY_TOLERANCE:.0e})")
        value = sample_psnr(model)
        print(f"sample image PSNR (1-step decode, float32): {value:.2f} dB")
        _warn_if_implausible(
            value,
            min_psnr,
            "a trained checkpoint",
            "The tensor names may have matched the wrong layers. Run with --verify to compare against "
            "the original code.",
        )
        _save(model, out, args)
    except (CheckpointError, OSError) as e:
        _error(f"{e}; nothing written")
        return 1
    print(f"wrote {out}")
    return 0


VMAE_MIN_PSNR_DB = 20.0


def run_vmae(args, pth: Path, out: Path) -> int:
    """Convert an LDMAE VMAE ``.pth`` (see :mod:`diffusers_mdiffae.conversion.vmae_pth`)."""
    import torch
    import torch.nn.functional as F

    from ..metrics import psnr
    from ..verify import load_sample_image
    from .layouts import CheckpointError
    from .vmae_pth import build_vmae, config_from_state_dict, load_latent_stats, read_vmae_pth

    if args.verify:
        _error(
            f"{pth}: --verify needs the original code, which a .pth does not ship; the re-implementation's parity "
            "is pinned by tests/test_vmae.py against a fixture made with LDMAE's code"
        )
        return 2
    overrides = {k: getattr(args, k) for k in ("num_heads", "decoder_num_heads") if getattr(args, k) is not None}
    min_psnr = VMAE_MIN_PSNR_DB if args.min_psnr is None else args.min_psnr
    try:
        if args.latent_stats is not None:
            overrides.update(load_latent_stats(args.latent_stats))
        ckpt = read_vmae_pth(pth)
        config = config_from_state_dict(ckpt.state_dict, ckpt.args, overrides)
        model = build_vmae(ckpt.state_dict, config, source=f"{pth} (entry {ckpt.entry!r})")
        print(
            f"loaded {pth}: AutoencoderVMAE, {model.num_parameters():,} values, every tensor matched; "
            f"dropped {len(ckpt.dropped)} training-only tensor(s)"
            + (f" ({', '.join(sorted({k.split('.')[0] for k in ckpt.dropped}))})" if ckpt.dropped else "")
        )
        size = model.config.img_size
        x = load_sample_image()
        if tuple(x.shape[-2:]) != (size, size):
            x = F.interpolate(x, size=(size, size), mode="bicubic", antialias=True, align_corners=False).clamp(-1, 1)
        with torch.no_grad():
            value = psnr(model(x).sample, x)
        print(f"sample image PSNR ({size}x{size}, posterior mean, float32): {value:.2f} dB")
        _warn_if_implausible(
            value,
            min_psnr,
            "a trained VMAE",
            "Check the head counts (--num-heads / --decoder-num-heads) and the checkpoint.",
        )
        _save(model, out, args)
    except (CheckpointError, OSError) as e:
        _error(f"{e}; nothing written")
        return 1
    print(f"wrote {out}")
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m diffusers_mdiffae.conversion",
        description="Convert a published mDiffAE / iRDiffAE / SemDisDiffAE snapshot, or an LDMAE VMAE .pth, "
        "to a diffusers folder.",
    )
    return run(add_arguments(parser).parse_args(argv))


__all__ = ["add_arguments", "main", "run"]
