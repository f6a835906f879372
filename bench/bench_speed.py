#!/usr/bin/env python
"""CPU speed and memory of AutoencoderMDiffAE next to diffusers' AutoencoderKL, measured in ONE run.

For every (size, dtype, op) cell the models are measured back to back, each in a fresh subprocess
(so its peak RSS is its own), with the same thread count: median (and min) wall time of several
runs after warm-up, FLOPs from torch.utils.flop_counter, peak RSS. The same run measures this
machine's dense-kernel peak (float32 / bfloat16 matrix multiply, both as torch.mm and as a
channels-last 1x1 convolution, the best of which is the ceiling our 1x1-convolution-bound network
can reach), the growth of time with pixel count up to 2048x2048, multi-step and PDG decodes, and
the peak memory of a tiled 2048x2048 decode.

    python bench/bench_speed.py                         # full run (~30 min on 2 cores), writes bench/RESULTS.md
    python bench/bench_speed.py --quick                 # 256/512 only, fewer runs (~5 min)
    python bench/bench_speed.py --update-readme         # also refresh the table block in README.md
    python bench/bench_speed.py --semdis                # SemDisDiffAE vs FLUX.2's AutoencoderKLFlux2 only
    python bench/bench_speed.py --demo                  # the bundled checkpoint vs SD-1.5's AutoencoderKL only

Random weights (but for ``--demo``, which times the bundled checkpoint): speed does not depend on them. Timings on a shared machine drift by tens of percent
over minutes, which is why only ratios measured inside one run are quoted.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
KL_CONFIGS = {
    # Published VAE configurations (random weights): SD 1.5 and FLUX.1 share the trunk.
    "sd15": {"latent_channels": 4, "sample_size": 512, "scaling_factor": 0.18215},
    "flux1": {
        "latent_channels": 16,
        "sample_size": 1024,
        "scaling_factor": 0.3611,
        "shift_factor": 0.1159,
        "use_quant_conv": False,
        "use_post_quant_conv": False,
    },
}
LABELS = {
    "mdiffae": "AutoencoderMDiffAE (mdiffae_v1)",
    "sd15": "AutoencoderKL SD-1.5",
    "flux1": "AutoencoderKL FLUX.1",
    "semdis": "AutoencoderSemDisDiffAE (published config)",
    "flux2": "AutoencoderKLFlux2 (FLUX.2, default config)",
    "demo": "AutoencoderMDiffAE (the bundled checkpoint)",
}
OURS = ("mdiffae", "semdis", "demo")  # 16x latents, decoded by sampling


# -- one measurement (runs in its own subprocess) -------------------------------------------------


def build(name: str):
    import diffusers

    if name == "mdiffae":
        from diffusers_mdiffae import AutoencoderMDiffAE

        return AutoencoderMDiffAE()
    if name == "semdis":
        from diffusers_mdiffae import AutoencoderSemDisDiffAE

        return AutoencoderSemDisDiffAE()
    if name == "demo":  # trained weights, the one model here that is not random
        from diffusers_mdiffae import DEMO_MODEL_DIR, AutoencoderMDiffAE

        return AutoencoderMDiffAE.from_pretrained(DEMO_MODEL_DIR)
    if name == "flux2":
        return diffusers.AutoencoderKLFlux2()  # its defaults are the FLUX.2 VAE
    cfg = KL_CONFIGS[name]
    return diffusers.AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        block_out_channels=(128, 256, 512, 512),
        layers_per_block=2,
        act_fn="silu",
        norm_num_groups=32,
        **cfg,
    )


def make_call(model, name: str, op: str, size: int, dtype):
    import torch

    g = torch.Generator().manual_seed(0)
    factor = 16 if name in OURS else 8
    if op == "encode":
        x = (torch.rand(1, 3, size, size, generator=g) * 2 - 1).to(dtype)
        if name in OURS:
            return lambda: model.encode(x).latent
        return lambda: model.encode(x).latent_dist.mode()
    z = torch.randn(1, model.config.latent_channels, size // factor, size // factor, generator=g).to(dtype)
    if name not in OURS:
        return lambda: model.decode(z).sample
    if op.startswith("decode_tiled:"):
        model.enable_tiling(tile_sample_min_size=int(op.split(":")[1]))
        op = "decode"
    steps, pdg = {"decode": (1, 1.0), "decode4": (4, 1.0), "decode4pdg": (4, 1.05)}[op]
    return lambda: model.decode(z, num_inference_steps=steps, pdg_strength=pdg).sample


def measure_one(name, op, size, dtype_name, runs, warmup, threads, count_flops) -> dict:
    import torch

    torch.set_num_threads(threads)
    dtype = getattr(torch, dtype_name)
    model = build(name).eval().to(dtype)
    call = make_call(model, name, op, size, dtype)
    out = {"model": name, "op": op, "size": size, "dtype": dtype_name}
    with torch.inference_mode():
        if count_flops:
            from torch.utils.flop_counter import FlopCounterMode

            with FlopCounterMode(display=False) as fc:
                call()
            out["gflop"] = fc.get_total_flops() / 1e9
        for _ in range(warmup):
            call()
        times = []
        for _ in range(runs):
            t0 = time.perf_counter()
            call()
            times.append(time.perf_counter() - t0)
    out.update(
        median_s=statistics.median(times),
        min_s=min(times),
        runs=runs,
        peak_rss_mib=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    )
    return out


def measure_peak(threads: int, seconds: float = 1.0) -> dict:
    """Best sustained GFLOP/s of dense kernels: torch.mm and a channels-last 1x1 convolution."""
    import torch

    torch.set_num_threads(threads)
    results = {}
    for dtype in (torch.float32, torch.bfloat16):
        best = {}
        with torch.inference_mode():
            for m, k, n in ((2048, 2048, 2048), (4096, 896, 3584), (4096, 3584, 896)):
                a, b = torch.randn(m, k, dtype=dtype), torch.randn(k, n, dtype=dtype)
                best["mm"] = max(best.get("mm", 0), _rate(lambda: a @ b, 2 * m * k * n, seconds))
                conv = torch.nn.Conv2d(k, n, 1, bias=False).to(dtype).to(memory_format=torch.channels_last)
                x = torch.randn(1, k, 64, m // 64, dtype=dtype).contiguous(memory_format=torch.channels_last)
                best["conv1x1"] = max(best.get("conv1x1", 0), _rate(lambda: conv(x), 2 * m * k * n, seconds))
        results[str(dtype).replace("torch.", "")] = best
    return results


def _rate(fn, flops: int, seconds: float) -> float:
    fn()
    best, t_end = float("inf"), time.perf_counter() + seconds
    while time.perf_counter() < t_end:
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return flops / best / 1e9


# -- orchestration ------------------------------------------------------------------------------


def run_sub(args: list, env) -> dict:
    cmd = [sys.executable, __file__, "--one", json.dumps(args)]
    res = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if res.returncode != 0:
        return {"error": res.stderr.strip().splitlines()[-1] if res.stderr.strip() else f"exit {res.returncode}"}
    return json.loads(res.stdout.strip().splitlines()[-1])


def plan(quick: bool):
    sizes = [256, 512] if quick else [256, 512, 1024]
    kl_sizes = sizes
    dtypes = ["float32", "bfloat16"]
    cells = []
    for dtype in dtypes:
        for size in sizes:
            for op in ("encode", "decode"):
                models = ["mdiffae"] + [m for m in ("sd15", "flux1") if size in kl_sizes]
                cells.append((size, dtype, op, models))
    extra = [("mdiffae", op, 512, "float32") for op in ("decode4", "decode4pdg")]
    scaling = [("mdiffae", op, s, "float32") for op in ("encode", "decode") for s in (256, 512, 1024, 2048)]
    memory = [
        ("mdiffae", op, 2048, "float32")
        for op in ("decode", "decode_tiled:256", "decode_tiled:512", "decode_tiled:1024")
    ]
    if quick:
        scaling = [c for c in scaling if c[2] <= 1024]
        memory = []
    return cells, extra, scaling, memory


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--one", help=argparse.SUPPRESS)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--runs", type=int, default=5, help="timed runs per mDiffAE cell (KL: --kl-runs)")
    p.add_argument("--kl-runs", type=int, default=3)
    p.add_argument("--quick", action="store_true", help="256/512 only, fewer runs")
    p.add_argument("--out", default=str(ROOT / "bench" / "RESULTS.md"))
    p.add_argument("--json", default=str(ROOT / "bench" / "results.json"))
    p.add_argument("--update-readme", action="store_true")
    p.add_argument(
        "--semdis", action="store_true", help="only SemDisDiffAE vs FLUX.2's VAE (writes bench/RESULTS_SEMDIS.md)"
    )
    p.add_argument(
        "--demo",
        action="store_true",
        help="only the bundled checkpoint vs SD-1.5's AutoencoderKL (writes bench/RESULTS_DEMO.md)",
    )
    a = p.parse_args(argv)

    if a.one:
        spec = json.loads(a.one)
        if spec[0] == "peak":
            print(json.dumps(measure_peak(spec[1])))
        else:
            print(json.dumps(measure_one(*spec)))
        return 0

    env = dict(os.environ, OMP_NUM_THREADS=str(a.threads))
    if a.semdis:
        return run_pair(a, env, "semdis", "flux2", "SemDisDiffAE", "FLUX.2 VAE", "--semdis", "SEMDIS")
    if a.demo:
        return run_pair(a, env, "demo", "sd15", "bundled mDiffAE", "SD-1.5 VAE", "--demo", "DEMO")
    runs, kl_runs = (2, 1) if a.quick else (a.runs, a.kl_runs)
    started = time.time()
    peak = run_sub(["peak", a.threads], env)
    print(f"dense-kernel peak: {json.dumps(peak)}", flush=True)
    cells, extra, scaling, memory = plan(a.quick)
    results = []
    for size, dtype, op, models in cells:
        for name in models:
            r = run_sub([name, op, size, dtype, runs if name == "mdiffae" else kl_runs, 1, a.threads, True], env)
            (
                r.setdefault("model", name),
                r.setdefault("op", op),
                r.setdefault("size", size),
                r.setdefault("dtype", dtype),
            )
            results.append(r)
            print(json.dumps(r), flush=True)
    for name, op, size, dtype in extra + scaling + memory:
        if any(
            r.get("model") == name and r.get("op") == op and r.get("size") == size and r.get("dtype") == dtype
            for r in results
        ):
            continue
        r = run_sub([name, op, size, dtype, 2 if size >= 2048 else runs, 1, a.threads, size <= 1024], env)
        r.setdefault("model", name), r.setdefault("op", op), r.setdefault("size", size), r.setdefault("dtype", dtype)
        results.append(r)
        print(json.dumps(r), flush=True)
    meta = {
        "machine": platform.processor() or platform.machine(),
        "cpu": _cpu_name(),
        "threads": a.threads,
        "python": platform.python_version(),
        "versions": _versions(),
        "wall_s": round(time.time() - started),
        "command": "python bench/bench_speed.py" + (" --quick" if a.quick else ""),
        "load_average_end": os.getloadavg(),
    }
    Path(a.json).write_text(json.dumps({"meta": meta, "peak": peak, "results": results}, indent=1))
    md = render(meta, peak, results)
    Path(a.out).write_text(md)
    print(md)
    if a.update_readme:
        update_readme(md)
    return 0


def run_pair(a, env, ours: str, peer: str, ours_label: str, peer_label: str, flag: str, stem: str) -> int:
    """One of our models next to a peer VAE, same process setup, back to back per cell (256 and 512, both dtypes)."""
    started = time.time()
    results = []
    for dtype in ("float32", "bfloat16"):
        for size in (256, 512):
            for op in ("encode", "decode"):
                for name in (ours, peer):
                    runs = a.runs if name == ours else a.kl_runs
                    r = run_sub([name, op, size, dtype, runs, 1, a.threads, True], env)
                    (
                        r.setdefault("model", name),
                        r.setdefault("op", op),
                        r.setdefault("size", size),
                        r.setdefault("dtype", dtype),
                    )
                    results.append(r)
                    print(json.dumps(r), flush=True)
    meta = {
        "cpu": _cpu_name(),
        "threads": a.threads,
        "versions": _versions(),
        "wall_s": round(time.time() - started),
        "command": f"python bench/bench_speed.py {flag}",
        "load_average_end": os.getloadavg(),
    }
    lines = [
        f"Measured in one run of `{meta['command']}` on {meta['cpu']} with {meta['threads']} threads "
        f"(torch {meta['versions']['torch']}, diffusers {meta['versions']['diffusers']}; {meta['wall_s']} s; load average "
        f"at the end {', '.join(f'{x:.2f}' for x in meta['load_average_end'])}). Batch 1, random weights, median of the "
        "timed runs (min in brackets), each cell in a fresh process.",
        "",
        f"| size | dtype | op | {ours_label} s | {peer_label} s | speed-up | {ours_label} GFLOP | {peer_label} GFLOP |",
        "|---:|---|---|---:|---:|---:|---:|---:|",
    ]
    for dtype in ("float32", "bfloat16"):
        for size in (256, 512):
            for op in ("encode", "decode"):
                m, f = _find(results, ours, op, size, dtype), _find(results, peer, op, size, dtype)
                if not (m and f):
                    continue
                lines.append(
                    f"| {size} | {dtype} | {op}{' (1 step)' if op == 'decode' else ''} | {m['median_s']:.3f} ({m['min_s']:.3f}) | "
                    f"{f['median_s']:.3f} ({f['min_s']:.3f}) | **{f['median_s'] / m['median_s']:.1f}x** | "
                    f"{m.get('gflop', float('nan')):.1f} | {f.get('gflop', float('nan')):.1f} |"
                )
    errors = [r for r in results if "error" in r]
    if errors:
        lines += [
            "",
            "Failed cells: "
            + "; ".join(f"{r['model']} {r['op']} {r['size']} {r['dtype']}: {r['error']}" for r in errors),
        ]
    md = "\n".join(lines) + "\n"
    Path(ROOT / "bench" / f"RESULTS_{stem}.md").write_text(md)
    Path(ROOT / "bench" / f"results_{stem.lower()}.json").write_text(
        json.dumps({"meta": meta, "results": results}, indent=1)
    )
    print(md)
    return 0


# -- report -------------------------------------------------------------------------------------


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.machine()


def _versions() -> dict:
    import diffusers
    import torch

    return {"torch": torch.__version__, "diffusers": diffusers.__version__}


def _find(results, model, op, size, dtype):
    for r in results:
        if (r.get("model"), r.get("op"), r.get("size"), r.get("dtype")) == (
            model,
            op,
            size,
            dtype,
        ) and "median_s" in r:
            return r
    return None


def render(meta, peak, results) -> str:
    lines = [
        f"Measured in one run of `{meta['command']}` on {meta['cpu']} with {meta['threads']} threads "
        f"(torch {meta['versions']['torch']}, diffusers {meta['versions']['diffusers']}; {meta['wall_s']} s; "
        f"load average at the end {', '.join(f'{x:.2f}' for x in meta['load_average_end'])}). "
        "Batch 1, random weights, median of the timed runs (min in brackets); peak RSS of the measuring "
        "process, imports and weights included.",
        "",
        "| size | dtype | op | mDiffAE s | SD-1.5 KL s | FLUX.1 KL s | speed-up vs FLUX.1 | mDiffAE GFLOP | mDiffAE GFLOP/s (% of peak) | peak RSS MiB mDiffAE / FLUX.1 |",
        "|---:|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    sizes = sorted({r["size"] for r in results if r.get("op") in ("encode", "decode") and r.get("model") == "flux1"})
    for dtype in ("float32", "bfloat16"):
        dpeak = max((peak.get(dtype) or {"x": 0}).values()) if isinstance(peak, dict) else 0
        for size in sizes:
            for op in ("encode", "decode"):
                m, s, f = (_find(results, k, op, size, dtype) for k in ("mdiffae", "sd15", "flux1"))
                if m is None:
                    continue
                rate = m["gflop"] / m["median_s"] if m.get("gflop") else float("nan")
                cell = lambda r: f"{r['median_s']:.3f} ({r['min_s']:.3f})" if r else "-"  # noqa: E731
                speed = f"**{f['median_s'] / m['median_s']:.1f}x**" if f else "-"
                pct = f"{rate:.0f} ({100 * rate / dpeak:.0f} %)" if dpeak else f"{rate:.0f}"
                rss = f"{m['peak_rss_mib']:.0f} / {f['peak_rss_mib']:.0f}" if f else f"{m['peak_rss_mib']:.0f} / -"
                lines.append(
                    f"| {size} | {dtype} | {op}{' (1 step)' if op == 'decode' else ''} | {cell(m)} | {cell(s)} | "
                    f"{cell(f)} | {speed} | {m.get('gflop', float('nan')):.1f} | {pct} | {rss} |"
                )
    lines += [
        "",
        "Dense-kernel peak measured in the same run (GFLOP/s, best of torch.mm and a channels-last 1x1 "
        "convolution at the network's shapes): "
        + "; ".join(f"{d}: mm {v.get('mm', 0):.0f}, conv1x1 {v.get('conv1x1', 0):.0f}" for d, v in peak.items())
        if isinstance(peak, dict) and "error" not in peak
        else "",
        "",
    ]
    lines += ["Decode variants at 512x512 float32:", "", "| decode | s | GFLOP |", "|---|---:|---:|"]
    for op, label in (
        ("decode", "1 step"),
        ("decode4", "4 steps"),
        ("decode4pdg", "4 steps + PDG (batched branches)"),
    ):
        r = _find(results, "mdiffae", op, 512, "float32")
        if r:
            lines.append(f"| {label} | {r['median_s']:.3f} | {r.get('gflop', float('nan')):.1f} |")
    lines += [
        "",
        "Growth with pixel count (float32):",
        "",
        "| size | encode s | encode µs/pixel | decode s | decode µs/pixel |",
        "|---:|---:|---:|---:|---:|",
    ]
    for size in (256, 512, 1024, 2048):
        e, d = (
            _find(results, "mdiffae", "encode", size, "float32"),
            _find(results, "mdiffae", "decode", size, "float32"),
        )
        if e and d:
            px = size * size
            lines.append(
                f"| {size} | {e['median_s']:.3f} | {1e6 * e['median_s'] / px:.3f} | {d['median_s']:.3f} | "
                f"{1e6 * d['median_s'] / px:.3f} |"
            )
    full = _find(results, "mdiffae", "decode", 2048, "float32")
    if full:
        lines += [
            "",
            "2048x2048 1-step decode, float32 (tiles overlap 25 %):",
            "",
            "| tiling | s | peak RSS MiB |",
            "|---|---:|---:|",
            f"| none | {full['median_s']:.2f} | {full['peak_rss_mib']:.0f} |",
        ]
        for tile in (256, 512, 1024):
            r = _find(results, "mdiffae", f"decode_tiled:{tile}", 2048, "float32")
            if r:
                lines.append(f"| {tile}-px tiles | {r['median_s']:.2f} | {r['peak_rss_mib']:.0f} |")
    errors = [r for r in results if "error" in r]
    if errors:
        lines += [
            "",
            "Failed cells: "
            + "; ".join(f"{r['model']} {r['op']} {r['size']} {r['dtype']}: {r['error']}" for r in errors),
        ]
    return "\n".join(lines) + "\n"


def update_readme(md: str) -> None:
    readme = ROOT / "README.md"
    text = readme.read_text()
    start, end = "<!-- bench:start -->", "<!-- bench:end -->"
    if start not in text or end not in text:
        raise SystemExit("README.md has no bench markers")
    head, rest = text.split(start, 1)
    _, tail = rest.split(end, 1)
    readme.write_text(f"{head}{start}\n{md}{end}{tail}")


if __name__ == "__main__":
    sys.exit(main())
