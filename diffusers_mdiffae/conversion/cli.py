"""Convert a published snapshot (``config.json`` + ``model.safetensors``) to a diffusers folder.

    python -m diffusers_mdiffae.conversion SNAPSHOT_DIR OUT_DIR [--verify] [--dtype float32]

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
    parser.add_argument("snapshot", help="downloaded original repository folder (config.json + model.safetensors)")
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
        help="warn when the sample reconstruction is below this PSNR in dB (default 25)",
    )
    return parser


def _error(message) -> None:
    print("error: " + "; ".join(line.strip() for line in str(message).splitlines() if line.strip()), file=sys.stderr)


def run(args) -> int:
    import torch

    from ..atomic import atomic_directory
    from ..models.hub import convert_original_snapshot
    from ..outputs import OutputError, check_output_not_input
    from ..verify import PLAUSIBLE_PSNR_DB, VERIFY_TOLERANCE, sample_psnr, verify_against_original
    from .layouts import CheckpointError

    out, snapshot = Path(args.out), Path(args.snapshot)
    try:
        check_output_not_input(out, [snapshot], replaces_folder=True)
    except OutputError as e:
        _error(e)
        return 2
    if out.exists() and not args.overwrite:
        _error(f"{out}: exists; pass --overwrite to replace it")
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
        if value < min_psnr:
            bar = "!" * 78
            print(
                f"{bar}\nWARNING: {value:.2f} dB is implausibly low for a trained checkpoint "
                f"(expected > {min_psnr:.0f} dB).\nThe tensor names may have matched the wrong "
                f"layers. Run with --verify to compare against the original code.\n{bar}",
                file=sys.stderr,
            )
        with atomic_directory(out, overwrite=args.overwrite) as tmp:
            model.to(getattr(torch, args.dtype)).save_pretrained(tmp)
    except (CheckpointError, OSError) as e:
        _error(f"{e}; nothing written")
        return 1
    print(f"wrote {out}")
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m diffusers_mdiffae.conversion",
        description="Convert a published mDiffAE / iRDiffAE / SemDisDiffAE snapshot to a diffusers folder.",
    )
    return run(add_arguments(parser).parse_args(argv))


__all__ = ["add_arguments", "main", "run"]
