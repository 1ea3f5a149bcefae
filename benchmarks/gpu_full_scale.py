"""Full-size networks on a GPU with random weights: forward time and peak memory in fp16 / bf16.

Run on a CUDA machine: `python benchmarks/gpu_full_scale.py run results.json` measures
  - the UNets of svd (14 frames at 576x1024), sd_xl_base (1024x1024) and sv4d2 (12 frames x 4 views
    at 576x576), one guided forward pass (batch doubled for classifier-free guidance);
  - svd's UNet training step (one 14-frame video) with and without gradient checkpointing (bf16);
  - svd's temporal VAE decoder at 576x1024, 14 frames, fp16, with chunk sizes 1, 2 and 14.
Then anywhere: `python benchmarks/gpu_full_scale.py report results.json` writes the `gpu_full_scale` section
of docs/benchmarks.md. Peak memory is torch.cuda.max_memory_allocated; times are CUDA-synchronised
medians of repeated runs after a warm-up.
"""

import json
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from minigen.nn.unet import set_gradient_checkpointing  # noqa: E402
from minigen.presets import get_preset  # noqa: E402

GIB = 2**30
# preset: frames per sample (times x views for multi-view models), latent size, context tokens, video / views
NETWORK_CASES = {
    "svd": dict(frames=14, height=72, width=128, tokens=1, video=True),
    "sd_xl_base": dict(frames=1, height=128, width=128, tokens=77),
    "sv4d2": dict(frames=12 * 4, height=72, width=72, views=4),
}
# the same for every official network, for benchmarks/full_scale.py --dry-run (shapes only)
ALL_NETWORK_CASES = {
    **NETWORK_CASES,
    **{name: dict(frames=14, height=72, width=128, tokens=1, video=True) for name in ("svd_image_decoder",)},
    **{name: dict(frames=25, height=72, width=128, tokens=1, video=True) for name in ("svd_xt", "svd_xt_1_1")},
    **{name: dict(frames=21, height=72, width=72, tokens=1, video=True) for name in ("sv3d_u", "sv3d_p")},
    "sd_2_1": dict(frames=1, height=64, width=64, tokens=77),
    "sd_2_1_768": dict(frames=1, height=96, width=96, tokens=77),
    "sd_xl_refiner": dict(frames=1, height=128, width=128, tokens=77),
    "sd_xl_turbo": dict(frames=1, height=64, width=64, tokens=77),
    "sv4d": dict(frames=5 * 8, height=72, width=72, views=8),
    "sv4d2_8views": dict(frames=5 * 8, height=72, width=72, views=8),
}


def timed(function, repeats: int = 5) -> float:
    """Median seconds of `function()` after one warm-up call."""
    function()
    torch.cuda.synchronize()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def network_inputs(name: str, network, dtype, copies: int = 2, device="cuda", case: dict | None = None) -> dict:
    """A batch of `copies` x frames (2: a guided pass) of the right shapes for the preset's network, at the sizes
    of ALL_NETWORK_CASES or of `case` (same keys)."""
    case, config = case or ALL_NETWORK_CASES[name], get_preset(name).network
    batch = copies * case["frames"]
    x = torch.randn(batch, config.in_channels, case["height"], case["width"], device=device, dtype=dtype)
    inputs = {"x": x, "timesteps": torch.rand(batch, device=device, dtype=dtype)}
    context_dim = config.context_dim if isinstance(config.context_dim, int) else config.context_dim[0]
    if "views" in case:
        times = case["frames"] // case["views"]
        inputs["context"] = torch.randn(copies, times, context_dim, device=device, dtype=dtype)
        inputs["cond_view"] = torch.randn(copies * case["views"], 4, case["height"], case["width"], device=device,
                                          dtype=dtype)
        inputs["cond_motion"] = torch.randn(copies * times, 4, case["height"], case["width"], device=device,
                                            dtype=dtype)
    else:
        inputs["context"] = torch.randn(batch, case["tokens"], context_dim, device=device, dtype=dtype)
    if getattr(config, "adm_in_channels", None):
        inputs["y"] = torch.randn(batch, config.adm_in_channels, device=device, dtype=dtype)
    if case.get("video"):
        inputs["num_video_frames"] = case["frames"]
        inputs["image_only_indicator"] = torch.zeros(copies, case["frames"], device=device, dtype=dtype)
    return inputs


def measure_network(name: str, dtype) -> dict:
    with torch.device("cuda"):
        network = get_preset(name).network.build().to(dtype).eval()
    weights = torch.cuda.memory_allocated()
    inputs = network_inputs(name, network, dtype)
    torch.cuda.reset_peak_memory_stats()
    with torch.inference_mode():
        seconds = timed(lambda: network(**inputs))
    result = {"preset": name, "dtype": str(dtype).removeprefix("torch."), "seconds": seconds,
              "weights_gib": weights / GIB, "peak_gib": torch.cuda.max_memory_allocated() / GIB,
              "parameters": sum(p.numel() for p in network.parameters())}
    return result


def measure_training_step(name: str, checkpointing: bool, dtype=torch.bfloat16) -> dict:
    """One forward + backward on one 14-frame video; a run out of memory is recorded as such."""
    with torch.device("cuda"):
        network = get_preset(name).network.build().to(dtype).train()
    set_gradient_checkpointing(network, checkpointing)
    inputs = network_inputs(name, network, dtype, copies=1)
    torch.cuda.reset_peak_memory_stats()
    try:
        seconds = timed(lambda: network(**inputs).float().square().mean().backward(), repeats=3)
    except torch.OutOfMemoryError:
        seconds = None
    return {"preset": name, "checkpointing": checkpointing, "seconds": seconds,
            "peak_gib": torch.cuda.max_memory_allocated() / GIB}


def measure_decoder(chunk_size: int, frames: int = 14, dtype=torch.float16) -> dict:
    with torch.device("cuda"):
        first_stage = get_preset("svd").first_stage_model.build().to(dtype).eval()
    z = torch.randn(frames, 4, 72, 128, device="cuda", dtype=dtype)
    torch.cuda.reset_peak_memory_stats()
    with torch.inference_mode():
        seconds = timed(lambda: first_stage.decode(z, chunk_size=chunk_size, num_frames=frames), repeats=3)
    result = {"chunk_size": chunk_size, "frames": frames, "seconds": seconds,
              "peak_gib": torch.cuda.max_memory_allocated() / GIB}
    return result


def run(path: str) -> None:
    torch.backends.cuda.matmul.allow_tf32 = True
    results = {"device": torch.cuda.get_device_name(), "torch": torch.__version__, "networks": [],
               "training": [], "decoder": []}
    for name in NETWORK_CASES:
        for dtype in (torch.float16, torch.bfloat16):
            results["networks"].append(measure_network(name, dtype))
            print(results["networks"][-1], flush=True)
            torch.cuda.empty_cache()  # the model of the last measurement is gone: release its memory
    for checkpointing in (False, True):
        results["training"].append(measure_training_step("svd", checkpointing))
        print(results["training"][-1], flush=True)
        torch.cuda.empty_cache()
    for chunk_size in (1, 2, 14):
        results["decoder"].append(measure_decoder(chunk_size))
        print(results["decoder"][-1], flush=True)
        torch.cuda.empty_cache()
    Path(path).write_text(json.dumps(results, indent=1))


def report(path: str) -> None:
    from _report import write_section

    results = json.loads(Path(path).read_text())
    lines = [
        "## Full-size networks on a GPU (random weights)",
        "",
        f"Device: {results['device']}, torch {results['torch']}. Written by `python benchmarks/gpu_full_scale.py "
        "run results.json` (on the GPU) then `... report results.json`. One guided forward pass: the batch is "
        "doubled for classifier-free guidance. svd: 14 frames at 576x1024; sd_xl_base: 1024x1024; sv4d2: "
        "12 frames x 4 views at 576x576.",
        "",
        "| network | parameters | dtype | forward (s) | weights (GiB) | peak (GiB) |",
        "|---|---|---|---|---|---|",
    ]
    for row in results["networks"]:
        lines.append(f"| {row['preset']} | {row['parameters'] / 1e9:.2f} B | {row['dtype']} | {row['seconds']:.3f} "
                     f"| {row['weights_gib']:.2f} | {row['peak_gib']:.2f} |")
    lines += ["", "**Gradient checkpointing** (svd UNet, bf16 weights and gradients, one training step on one "
              "14-frame video at 576x1024):", "", "| checkpointing | step (s) | peak (GiB) |", "|---|---|---|"]
    lines += [f"| {row['checkpointing']} | "
              f"{'out of memory' if row['seconds'] is None else format(row['seconds'], '.2f')} | "
              f"{row['peak_gib']:.1f} |" for row in results["training"]]
    lines += ["", "**svd temporal decoder**, 14 frames at 576x1024, fp16:", "",
              "| chunk size (decoding_t) | decode (s) | peak (GiB) |", "|---|---|---|"]
    lines += [f"| {row['chunk_size']} | {row['seconds']:.2f} | {row['peak_gib']:.2f} |" for row in results["decoder"]]
    write_section("gpu_full_scale", "\n".join(lines))


if __name__ == "__main__":
    command, path = sys.argv[1], sys.argv[2]
    {"run": run, "report": report}[command](path)
