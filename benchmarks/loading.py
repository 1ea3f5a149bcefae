"""Time to the first result from an official-size checkpoint: load, then one guided forward pass.

What a user feels is not the load alone but the time until the network has run once: a memory-mapped load
returns at once and reads the weights during that first pass. So each variant is timed, in a fresh process
of its own, from just before the load to the end of the first guided forward pass (a doubled batch, as
classifier-free guidance runs it), and its peak resident memory (`VmHWM`, which counts the mapped file pages
it touched) is read at the end:

- **minigen**: `DiffusionEngine.from_checkpoint(file, "svd", dtype=torch.bfloat16)`: the engine built on the
  meta device (no random initialisation) and filled tensor by tensor from the memory-mapped file, each converted
  to bfloat16 as it is read (on a GPU: float16, straight to the device).
- **construct then load**: what the reference scripts do: the engine constructed normally (float32, random
  initialisation), then `load_state_dict(safetensors.torch.load_file(file))`.
- **diffusers**: `UNetSpatioTemporalConditionModel.from_pretrained(folder)` on the same UNet (SVD's published
  config, the same number of parameters) saved in diffusers' own layout (float16 safetensors): diffusers cannot
  read the SGM single file for SVD offline, and its pipeline loads each part from its own folder, so it loads
  the UNet alone (1.52 B parameters), where the first two open the whole engine file (2.39 B).

The forward pass is the same computation in every variant: SVD's UNet on 2 x 14 frames at 64x64 (8x8 latents),
under bfloat16 autocast on the CPU (this CPU runs float16 matrix products about 100x slower than bfloat16) or
float16 autocast on a GPU. The weights are random:
the file is written from the bundled manifest (every tensor name and shape of the official checkpoint), once,
in a temporary folder, before the runs; every run then reads it from the page cache.

Run `python benchmarks/loading.py` (about 5 minutes on 2 cores; 10 GB of free disk and 16 GB of memory for the
construct-then-load runs). It writes `benchmarks/results/loading.json` and the `loading` section of
docs/benchmarks.md (`--report`: the section again from that file). `--device cuda` measures the same on a GPU
(straight to the device for minigen; results/loading_cuda.json, section `loading_gpu`).
"""

import argparse
import gzip
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import median_over, write_section  # noqa: E402

from minigen import profiling  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
MANIFEST = ROOT / "minigen" / "manifests" / "svd.json.gz"
RESULTS = ROOT / "benchmarks" / "results" / "loading.json"
PRESET = "svd"
FRAMES, LATENT_SIDE = 14, 8  # the forward pass: 2 x 14 frames of 8x8 latents
VARIANTS = ("minigen", "construct then load", "diffusers")
REPEATS = 3  # fresh processes per variant; the table shows the median
COMPUTE_DTYPE = {"cpu": torch.bfloat16, "cuda": torch.float16}  # this CPU runs float16 products ~100x slower
GIB = 2**30
REGENERATE = "python benchmarks/loading.py"


# ------------------------------------------------------------------------------------------ the files


def write_engine_file(path: Path, seed: int = 0) -> None:
    """A float16 safetensors file with every tensor of the official svd checkpoint, random values."""
    from safetensors.torch import save_file

    tensors = json.loads(gzip.decompress(MANIFEST.read_bytes()))["tensors"]
    generator = torch.Generator().manual_seed(seed)
    state = {key: (0.02 * torch.randn(entry["shape"], generator=generator)).half() for key, entry in tensors.items()}
    save_file(state, path)


def write_diffusers_folder(folder: Path) -> None:
    """diffusers' UNetSpatioTemporalConditionModel with SVD's published config (its defaults), saved float16."""
    from diffusers import UNetSpatioTemporalConditionModel

    UNetSpatioTemporalConditionModel().half().save_pretrained(folder, safe_serialization=True)


# ------------------------------------------------------------------------------------------ one variant


def guided_inputs(device: str, dtype: torch.dtype) -> dict:
    """SVD's network inputs for one guided pass: 2 x FRAMES frames (the unconditional half, then the conditional)."""
    generator = torch.Generator().manual_seed(0)
    batch = 2 * FRAMES

    def random(*shape):
        return torch.randn(*shape, generator=generator).to(device, dtype)

    return {"x": random(batch, 4, LATENT_SIDE, LATENT_SIDE), "sigma": torch.full((batch,), 2.0, device=device),
            "concat": random(batch, 4, LATENT_SIDE, LATENT_SIDE), "crossattn": random(batch, 1, 1024),
            "vector": random(batch, 768)}


def precision(device: str):
    """bfloat16 autocast on the CPU, float16 autocast on a GPU: the same arithmetic for every variant."""
    return torch.autocast(device, dtype=COMPUTE_DTYPE[device])


def first_pass_minigen(engine, inputs: dict) -> torch.Tensor:
    cond = {key: inputs[key] for key in ("concat", "crossattn", "vector")}
    indicator = torch.zeros(2, FRAMES, device=inputs["x"].device)
    return engine.denoise(inputs["x"], inputs["sigma"], cond, num_video_frames=FRAMES,
                          image_only_indicator=indicator)


def load_minigen(path: Path, device: str):
    from minigen.pipelines import DiffusionEngine

    return DiffusionEngine.from_checkpoint(path, PRESET, device=device, dtype=COMPUTE_DTYPE[device])


def load_construct_then_load(path: Path, device: str):
    from safetensors.torch import load_file

    from minigen.pipelines import DiffusionEngine

    engine = DiffusionEngine.from_preset(PRESET, weights="random")  # constructed and initialised, float32
    engine.load_state_dict(load_file(path))
    return engine.to(device)


def first_pass_diffusers(unet, inputs: dict) -> torch.Tensor:
    """The same pass through diffusers' UNet: noisy latents and the image latents side by side per frame."""
    sample = torch.cat([inputs["x"], inputs["concat"]], dim=1).unflatten(0, (2, FRAMES))  # b t c h w
    added_time_ids = inputs["vector"][::FRAMES, :3]  # fps, motion bucket, noise augmentation per video
    context = inputs["crossattn"][::FRAMES]  # b 1 1024
    return unet(sample, inputs["sigma"][:2], encoder_hidden_states=context, added_time_ids=added_time_ids).sample


def run_variant(variant: str, path: Path, device: str) -> dict:
    """Load, then one guided forward pass; seconds from just before the load, the peak resident memory, and the
    process's own size before the load (Python, PyTorch and the libraries imported)."""
    if variant == "diffusers":
        import diffusers  # noqa: F401  (imported before the clock starts, as minigen is)
    else:
        import minigen.pipelines  # noqa: F401
    before = profiling.resident_mib() / 1024
    start = time.perf_counter()
    if variant == "diffusers":
        from diffusers import UNetSpatioTemporalConditionModel

        model = UNetSpatioTemporalConditionModel.from_pretrained(path, torch_dtype=COMPUTE_DTYPE[device]).to(device)
        forward = first_pass_diffusers
    else:
        model = (load_minigen if variant == "minigen" else load_construct_then_load)(path, device)
        forward = first_pass_minigen
    loaded = time.perf_counter()
    inputs = guided_inputs(device, torch.float32)
    with torch.inference_mode(), precision(device):
        output = forward(model, inputs)
    if device == "cuda":
        torch.cuda.synchronize()
    done = time.perf_counter()
    if not torch.isfinite(output).all():
        raise RuntimeError(f"{variant}: the first pass gave non-finite values")
    return {"variant": variant, "load_s": loaded - start, "first_result_s": done - start,
            "peak_rss_gib": profiling.peak_resident_mib() / 1024,  # VmHWM: counts the mapped pages touched
            "process_gib": before,
            "gpu_peak_gib": torch.cuda.max_memory_allocated() / GIB if device == "cuda" else None}


# ------------------------------------------------------------------------------------------ the table


def fresh_process(variant: str, path: Path, device: str) -> dict:
    """`run_variant` in a new Python process, so that no variant inherits another's memory or caches."""
    command = [sys.executable, __file__, "--variant", variant, "--path", str(path), "--device", device]
    result = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "PYTHONWARNINGS": "ignore"})
    if result.returncode:
        return {"variant": variant, "error": (result.stderr.strip().splitlines() or ["failed"])[-1]}
    return json.loads(result.stdout.strip().splitlines()[-1])


def diffusers_available() -> str | None:
    try:
        import diffusers
    except ImportError:
        return None
    return diffusers.__version__


def measure(device: str, repeats: int) -> dict:
    rows = []
    with tempfile.TemporaryDirectory(dir=os.environ.get("MINIGEN_BENCH_TMP")) as folder:
        engine_file, diffusers_folder = Path(folder) / "svd.safetensors", Path(folder) / "unet"
        subprocess.run([sys.executable, __file__, "--write", str(engine_file)], check=True)
        sizes = {"engine file": engine_file.stat().st_size / GIB}
        if diffusers_available():
            subprocess.run([sys.executable, __file__, "--write-diffusers", str(diffusers_folder)], check=True)
            sizes["diffusers unet"] = sum(f.stat().st_size for f in diffusers_folder.iterdir()) / GIB
        for variant in VARIANTS:
            if variant == "diffusers" and not diffusers_available():
                rows.append({"variant": variant, "error": "diffusers is not installed (pip install -e '.[bench]')"})
                continue
            path = diffusers_folder if variant == "diffusers" else engine_file
            runs = [fresh_process(variant, path, device) for _ in range(repeats)]
            rows.append(median_over(runs, ("load_s", "first_result_s", "peak_rss_gib", "process_gib")))
            print(rows[-1], flush=True)
    return {"machine": machine(device), "device": device, "sizes_gib": sizes, "rows": rows,
            "diffusers": diffusers_available()}


def machine(device: str) -> str:
    if device == "cuda":
        return f"{torch.cuda.get_device_name()}, PyTorch {torch.__version__}"
    return (f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, PyTorch {torch.__version__}, "
            f"load average {os.getloadavg()[0]:.1f} at the start")


def report(results: dict) -> str:
    by_variant = {row["variant"]: row for row in results["rows"]}
    base, ours = by_variant["construct then load"], by_variant["minigen"]
    file_gib = results["sizes_gib"]["engine file"]
    lines = [
        "## Loading an official-size checkpoint: time to the first result",
        "",
        f"Machine: {results['machine']}; diffusers {results['diffusers'] or 'not installed'}. Written by "
        f"`{REGENERATE}`{' --device cuda' if results['device'] == 'cuda' else ''}. Each variant runs in a fresh "
        f"process ({ours.get('runs', REPEATS)} times; medians), from just before the load to the end of one guided "
        f"forward pass of SVD's UNet (2 x {FRAMES} frames of {LATENT_SIDE}x{LATENT_SIDE} latents, bfloat16 autocast "
        "on the CPU). Random float16 weights written from the svd manifest: the engine file holds "
        f"{file_gib:.2f} GiB (2.39 B parameters, the UNet 1.52 B of them); diffusers loads its UNet alone "
        f"({results['sizes_gib'].get('diffusers unet', float('nan')):.2f} GiB). Peak memory is `VmHWM`, which "
        "counts the file pages a process mapped and touched.",
        "",
        "| variant | load (s) | to the first result (s) | peak RSS (GiB) | of which the process before loading | "
        "peak RSS / the file it loads |",
        "|---|---|---|---|---|---|",
    ]
    for row in results["rows"]:
        if "error" in row:
            lines.append(f"| {row['variant']} | not measured: {row['error']} | | | | |")
            continue
        loaded_gib = results["sizes_gib"]["diffusers unet" if row["variant"] == "diffusers" else "engine file"]
        lines.append(f"| {row['variant']} | {row['load_s']:.2f} | {row['first_result_s']:.2f} | "
                     f"{row['peak_rss_gib']:.2f} | {row['process_gib']:.2f} | {row['peak_rss_gib'] / loaded_gib:.2f} |")
    if "error" not in ours and "error" not in base:
        speedup = base["first_result_s"] / ours["first_result_s"]
        memory = ours["peak_rss_gib"] / file_gib
        lines += ["", f"minigen reaches the first result **{speedup:.1f}x sooner** than construct-then-load (goal: "
                  f"3x, {'met' if speedup >= 3 else 'missed'}) at **{memory:.2f}x the file** in peak memory (goal: at "
                  f"most 1.1x, {'met' if memory <= 1.1 else 'missed'}); above what the process held before loading "
                  f"(Python, PyTorch, the libraries), {(ours['peak_rss_gib'] - ours['process_gib']) / file_gib:.2f}x. "
                  f"Construct-then-load peaks at {base['peak_rss_gib'] / file_gib:.2f}x: float32 parameters "
                  "(twice the file) plus the whole file read into memory."]
        if memory > 1.1:
            lines += ["", "Why the memory goal is missed: the weights, converted to bfloat16 as they are read (the "
                      "mapping is renewed every 64 MiB, so file pages already copied are let go), hold 1.00x the "
                      f"float16 file; the process itself held {ours['process_gib']:.2f} GiB "
                      f"({ours['process_gib'] / file_gib:.2f}x) before loading anything. A load in the file's own "
                      "dtype maps the tensors without copying them (0.8 GB at the end of the load), but this CPU "
                      "multiplies float16 matrices about 100x slower than bfloat16, so it is no way to a result."]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--repeats", type=int, default=REPEATS)
    parser.add_argument("--report", action="store_true", help="rewrite the section from the saved JSON")
    parser.add_argument("--variant", choices=VARIANTS, help="(internal) run one variant in this process")
    parser.add_argument("--path", type=Path, help="(internal) the file or folder the variant loads")
    parser.add_argument("--write", type=Path, help="(internal) write the random-weight engine file")
    parser.add_argument("--write-diffusers", type=Path, help="(internal) write the diffusers UNet folder")
    args = parser.parse_args()
    if args.write:
        return write_engine_file(args.write)
    if args.write_diffusers:
        return write_diffusers_folder(args.write_diffusers)
    if args.variant:
        return print(json.dumps(run_variant(args.variant, args.path, args.device)))
    results_path = RESULTS if args.device == "cpu" else RESULTS.with_stem("loading_cuda")
    results = json.loads(results_path.read_text()) if args.report else measure(args.device, args.repeats)
    results_path.write_text(json.dumps(results, indent=1))
    write_section("loading" if args.device == "cpu" else "loading_gpu", report(results))


if __name__ == "__main__":
    main()
