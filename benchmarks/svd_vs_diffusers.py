"""Image to video against diffusers, on the CPU: the whole pipeline at tiny size, and SVD's official-width UNet.

1. **Pipeline, tiny.** minigen's `SVDPipeline` on the tiny_svd preset (random weights) against diffusers'
   `StableVideoDiffusionPipeline` assembled from parts of the same sizes: `UNetSpatioTemporalConditionModel`
   with tiny_svd's widths (`diffusers_twin` of benchmarks/attention.py), `AutoencoderKLTemporalDecoder` with the
   tiny VAE's, transformers' `CLIPVisionModelWithProjection` with the tiny CLIP tower's, and `EulerDiscreteScheduler`
   with SVD's published scheduler config (Karras sigmas 0.002 - 700, v-prediction). Both make an 8-frame 64x64
   clip from the same 64x64 image in 16 steps with guidance 1.0 -> 2.5 (the scale ramp over frames), conditioning,
   sampling and temporal decoding included. diffusers resizes the image to 224x224 for CLIP, as minigen does.
2. **Network, official width.** One guided forward pass (2 x 14 frames of 8x8 latents) of SVD's UNet: minigen's
   `svd` network against diffusers' `UNetSpatioTemporalConditionModel()` (its defaults are SVD's published config),
   both random, 1.52 B parameters, in bfloat16 (this CPU's fast type).

Every measurement runs in a fresh process (`--point`): the model is built, warmed up once, then timed `REPEATS`
times (the median is kept); its peak memory is the highest resident memory during the timed calls above what the
process held before them (`VmHWM` reset first, minigen.profiling). The table shows the median over `PROCESSES`
processes. Writes the `svd_vs_diffusers` section of docs/benchmarks.md and benchmarks/results/svd_vs_diffusers.json.

    python benchmarks/svd_vs_diffusers.py             # about 6 minutes on 2 cores; needs diffusers + transformers
    python benchmarks/svd_vs_diffusers.py --point pipeline minigen   # one point, printed as JSON
    python benchmarks/svd_vs_diffusers.py --device cuda              # the same on a GPU (section ..._gpu)
"""

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import median_over, write_section  # noqa: E402
from attention import diffusers_twin, machine  # noqa: E402

from minigen import profiling  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "svd_vs_diffusers.json"
CLIP = dict(frames=8, side=64, steps=16, min_cfg=1.0, cfg=2.5, motion_bucket_id=127, fps_id=6, cond_aug=0.02)
NETWORK = dict(frames=14, latent_side=8)
REPEATS = {"pipeline": 3, "network": 3}
PROCESSES = 3
LIBRARIES = ("minigen", "diffusers")
REGENERATE = "python benchmarks/svd_vs_diffusers.py"
DEVICE = "cpu"  # --device cuda measures on a GPU: time synchronised, memory as torch.cuda's peak allocation


# --------------------------------------------------------------------------------- the pipeline at tiny size


def input_image() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (CLIP["side"], CLIP["side"], 3), dtype=np.uint8)


def minigen_pipeline():
    """A function making one tiny_svd clip with minigen."""
    from minigen.pipelines.svd import SVDPipeline

    pipeline = SVDPipeline.from_preset("tiny_svd", weights="random", device=DEVICE)
    image = input_image()
    return lambda: pipeline(image, num_frames=CLIP["frames"], num_steps=CLIP["steps"], min_cfg=CLIP["min_cfg"],
                            cfg=CLIP["cfg"], motion_bucket_id=CLIP["motion_bucket_id"], fps_id=CLIP["fps_id"],
                            cond_aug=CLIP["cond_aug"], seed=0, progress=False)


def svd_scheduler():
    """EulerDiscreteScheduler with SVD's published scheduler config."""
    from diffusers import EulerDiscreteScheduler

    return EulerDiscreteScheduler(
        beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012, interpolation_type="linear",
        num_train_timesteps=1000, prediction_type="v_prediction", sigma_max=700.0, sigma_min=0.002, steps_offset=1,
        timestep_spacing="leading", timestep_type="continuous", use_karras_sigmas=True)


def diffusers_parts():
    """diffusers / transformers parts with the tiny_svd preset's sizes."""
    from diffusers import AutoencoderKLTemporalDecoder
    from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModelWithProjection

    from minigen.presets import get_preset
    from minigen.presets.conditioners import TINY_VISION_CFG

    vision = TINY_VISION_CFG
    encoder = CLIPVisionModelWithProjection(CLIPVisionConfig(
        hidden_size=vision["width"], intermediate_size=4 * vision["width"], num_hidden_layers=vision["layers"],
        num_attention_heads=vision["width"] // vision["head_width"], image_size=vision["image_size"],
        patch_size=vision["patch_size"], projection_dim=32)).eval()
    ddconfig = get_preset("tiny_svd").first_stage_model.ddconfig
    vae = AutoencoderKLTemporalDecoder(
        block_out_channels=tuple(ddconfig.ch * mult for mult in ddconfig.ch_mult),
        down_block_types=("DownEncoderBlock2D",) * len(ddconfig.ch_mult), layers_per_block=ddconfig.num_res_blocks,
        latent_channels=4, sample_size=CLIP["side"]).eval()
    unet = diffusers_twin(get_preset("tiny_svd").network)
    processor = CLIPImageProcessor(size={"shortest_edge": vision["image_size"]},
                                   crop_size={"height": vision["image_size"], "width": vision["image_size"]})
    return {"image_encoder": encoder, "vae": vae, "unet": unet, "feature_extractor": processor}


def diffusers_pipeline():
    """A function making one clip of the same size with diffusers' StableVideoDiffusionPipeline."""
    from diffusers import StableVideoDiffusionPipeline
    from PIL import Image

    pipeline = StableVideoDiffusionPipeline(scheduler=svd_scheduler(), **diffusers_parts()).to(DEVICE)
    pipeline.set_progress_bar_config(disable=True)
    image = Image.fromarray(input_image())
    return lambda: pipeline(image, height=CLIP["side"], width=CLIP["side"], num_frames=CLIP["frames"],
                            num_inference_steps=CLIP["steps"], min_guidance_scale=CLIP["min_cfg"],
                            max_guidance_scale=CLIP["cfg"], fps=CLIP["fps_id"] + 1,  # diffusers subtracts 1
                            motion_bucket_id=CLIP["motion_bucket_id"], noise_aug_strength=CLIP["cond_aug"],
                            decode_chunk_size=CLIP["frames"], generator=torch.Generator().manual_seed(0),
                            output_type="np")


# --------------------------------------------------------------------------------- the official-width network


def network_inputs(in_channels: int, context_dim: int, adm_channels: int) -> dict:
    """One guided pass: 2 videos (unconditional, conditional) x frames, in bfloat16."""
    generator = torch.Generator().manual_seed(0)
    frames, side = NETWORK["frames"], NETWORK["latent_side"]

    def random(*shape):
        return torch.randn(*shape, generator=generator).to(DEVICE, torch.bfloat16)

    return {"x": random(2 * frames, in_channels, side, side),
            "timesteps": torch.full((2 * frames,), 0.5, device=DEVICE),
            "context": random(2 * frames, 1, context_dim), "y": random(2 * frames, adm_channels)}


def minigen_network():
    from minigen.presets import get_preset

    config = get_preset("svd").network
    network = config.build().to(DEVICE, torch.bfloat16).eval()
    inputs = network_inputs(config.in_channels, config.context_dim, config.adm_in_channels)
    frames = NETWORK["frames"]
    indicator = torch.zeros(2, frames, device=DEVICE)
    return lambda: network(**inputs, num_video_frames=frames, image_only_indicator=indicator)


def diffusers_network():
    from diffusers import UNetSpatioTemporalConditionModel

    unet = UNetSpatioTemporalConditionModel().to(DEVICE, torch.bfloat16).eval()  # defaults: SVD's published config
    frames = NETWORK["frames"]
    inputs = network_inputs(unet.config.in_channels, unet.config.cross_attention_dim, 3)
    sample = inputs["x"].unflatten(0, (2, frames))  # b t c h w
    context = inputs["context"][::frames]
    added_time_ids = torch.tensor([[6.0, 127.0, 0.02]] * 2).to(DEVICE, torch.bfloat16)
    return lambda: unet(sample, inputs["timesteps"][:2], encoder_hidden_states=context,
                        added_time_ids=added_time_ids).sample


BUILDERS = {("pipeline", "minigen"): minigen_pipeline, ("pipeline", "diffusers"): diffusers_pipeline,
            ("network", "minigen"): minigen_network, ("network", "diffusers"): diffusers_network}


# --------------------------------------------------------------------------------- measuring


def memory_mib() -> float:
    """Memory in use now: resident memory on the CPU, allocated memory on a GPU."""
    return torch.cuda.memory_allocated() / 2**20 if DEVICE == "cuda" else profiling.resident_mib()


def reset_peak_memory() -> None:
    if DEVICE == "cuda":
        torch.cuda.reset_peak_memory_stats()
    else:
        profiling.reset_peak()


def peak_memory_mib() -> float:
    return torch.cuda.max_memory_allocated() / 2**20 if DEVICE == "cuda" else profiling.peak_resident_mib()


def timed(run) -> float:
    start = time.perf_counter()
    run()
    if DEVICE == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def measure_point(kind: str, library: str) -> dict:
    """In this process: build, warm up, then time REPEATS calls and take the peak memory above the start."""
    run = BUILDERS[kind, library]()
    with torch.inference_mode():
        timed(run)  # warm-up: lazy initialisation, first allocations
        reset_peak_memory()
        before = memory_mib()
        times = [timed(run) for _ in range(REPEATS[kind])]
    return {"kind": kind, "library": library, "seconds": statistics.median(times),
            "peak_mib": peak_memory_mib() - before}


def in_fresh_process(kind: str, library: str, threads: int) -> dict:
    command = [sys.executable, __file__, "--point", kind, library, "--threads", str(threads), "--device", DEVICE]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode:
        return {"kind": kind, "library": library, "error": (result.stderr.strip().splitlines() or ["?"])[-1]}
    return json.loads(result.stdout.strip().splitlines()[-1])


def measure(threads: int) -> dict:
    rows = []
    for kind in ("pipeline", "network"):
        for _ in range(PROCESSES):  # the libraries alternate, so a busy spell of the machine hits both
            rows += [in_fresh_process(kind, library, threads) for library in LIBRARIES]
    table = {(kind, library): median_over([row for row in rows if (row["kind"], row["library"]) == (kind, library)],
                                          ("seconds", "peak_mib"))
             for kind in ("pipeline", "network") for library in LIBRARIES}
    import diffusers

    name = torch.cuda.get_device_name() if DEVICE == "cuda" else machine()
    return {"machine": name, "device": DEVICE, "threads": threads, "torch": torch.__version__,
            "diffusers": diffusers.__version__, "rows": list(table.values()), "all_runs": rows}


def report(results: dict) -> str:
    rows = {(row["kind"], row["library"]): row for row in results["rows"]}
    lines = [
        f"## Image to video against diffusers ({'GPU' if results.get('device') == 'cuda' else 'CPU'})",
        "",
        f"Machine: {results['machine']}, {results['threads']} threads, PyTorch {results['torch']}, diffusers "
        f"{results['diffusers']}. Written by `{REGENERATE}`. Each figure is the median over {PROCESSES} fresh "
        "processes of the median of several calls after a warm-up; memory is the peak resident memory during the "
        "calls above what the process held before them.",
        "",
        f"- **Pipeline, tiny**: one {CLIP['frames']}-frame {CLIP['side']}x{CLIP['side']} clip, {CLIP['steps']} steps, "
        "guidance 1.0 -> 2.5, conditioning + sampling + temporal decoding; minigen `SVDPipeline` (tiny_svd, random "
        "weights) against `StableVideoDiffusionPipeline` built from parts of the same sizes, float32.",
        f"- **Network, official width**: one guided forward pass (2 x {NETWORK['frames']} frames of "
        f"{NETWORK['latent_side']}x{NETWORK['latent_side']} latents) of SVD's 1.52 B-parameter UNet, random weights, "
        "bfloat16: minigen's `svd` network against `UNetSpatioTemporalConditionModel()` (SVD's published config).",
        "",
        "| measurement | minigen | diffusers | minigen / diffusers | goal |",
        "|---|---|---|---|---|",
    ]
    for kind, label in (("pipeline", "pipeline, tiny"), ("network", "network, official width")):
        ours, theirs = rows[kind, "minigen"], rows[kind, "diffusers"]
        if "error" in ours or "error" in theirs:
            lines.append(f"| {label} | {ours.get('error', '')} | {theirs.get('error', '')} | | |")
            continue
        spreads = {library: spread(results["all_runs"], kind, library) for library in LIBRARIES}
        time_ratio, memory_ratio = ours["seconds"] / theirs["seconds"], ours["peak_mib"] / theirs["peak_mib"]
        lines.append(f"| {label}: seconds | {ours['seconds']:.2f} | {theirs['seconds']:.2f} | {time_ratio:.2f} | "
                     f"at least as fast: {verdict(time_ratio, *spreads.values(), 'seconds')} |")
        lines.append(f"| {label}: peak memory (MiB), median (range) | {ours['peak_mib']:.0f} "
                     f"({spreads['minigen']['peak_mib'][0]:.0f}-{spreads['minigen']['peak_mib'][1]:.0f}) | "
                     f"{theirs['peak_mib']:.0f} ({spreads['diffusers']['peak_mib'][0]:.0f}-"
                     f"{spreads['diffusers']['peak_mib'][1]:.0f}) | {memory_ratio:.2f} | "
                     f"no more memory: {verdict(memory_ratio, *spreads.values(), 'peak_mib')} |")
    return "\n".join(lines)


def spread(runs: list[dict], kind: str, library: str) -> dict:
    """The lowest and highest value of each measurement over a point's processes."""
    points = [run for run in runs if (run["kind"], run["library"]) == (kind, library) and "error" not in run]
    return {key: (min(run[key] for run in points), max(run[key] for run in points)) for key in ("seconds", "peak_mib")}


def verdict(ratio: float, ours: dict, theirs: dict, key: str) -> str:
    """Met, missed by how much, or not measurable: the two libraries' ranges over processes overlap."""
    if ratio <= 1:
        return "met"
    if ours[key][0] <= theirs[key][1]:
        return (f"median {100 * (ratio - 1):.0f}% higher, but the processes' ranges overlap (allocator and load "
                "noise): no difference measured")
    return f"missed by {100 * (ratio - 1):.0f}%"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--point", nargs=2, metavar=("KIND", "LIBRARY"), help="measure one point in this process")
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--report", action="store_true", help="rewrite the section from the saved JSON")
    args = parser.parse_args()
    global DEVICE
    DEVICE = args.device
    torch.set_num_threads(args.threads)
    if args.point:
        return print(json.dumps(measure_point(*args.point)))
    results_path = RESULTS if DEVICE == "cpu" else RESULTS.with_stem("svd_vs_diffusers_cuda")
    results = json.loads(results_path.read_text()) if args.report else measure(args.threads)
    results_path.write_text(json.dumps(results, indent=1))
    write_section("svd_vs_diffusers" if DEVICE == "cpu" else "svd_vs_diffusers_gpu", report(results))


if __name__ == "__main__":
    main()
