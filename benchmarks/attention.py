"""minigen's attention (PyTorch SDPA) against naive softmax(QK^T)V, and the tiny video UNet against diffusers.

Attention at SVD-like token shapes scaled to a laptop CPU: spatial attention over the 64x64 = 4096 tokens
of one frame (320 channels = 5 heads of 64), temporal attention over the 14 frames of each of 4096 pixels.
Times are medians in this process; each peak memory is measured in a fresh Python process: its peak
resident set size (`VmHWM` in /proc/self/status) minus its size once the inputs exist. (`resource.getrusage`'s
ru_maxrss would do, but it survives the fork + exec that starts the process, so it can report this parent's
larger peak instead of the child's.) Then one forward pass of the tiny_svd VideoUNet against diffusers'
UNetSpatioTemporalConditionModel of the same sizes, if diffusers is installed (the `bench` extra).
Writes the `attention` section of docs/benchmarks.md; notebook 04 explains the maths.

    python benchmarks/attention.py                        # everything (20 s on 2 idle CPU cores)
    python benchmarks/attention.py --point spatial naive  # one memory point; prints JSON
"""

import argparse
import json
import platform
import statistics
import subprocess
import sys
import time

import torch
from _report import cpu_machine, write_section  # benchmarks/ is the script's folder

from minigen import profiling
from minigen.nn.attention import attention, naive_attention

THREADS = 2
# name: (batch of sequences, heads, tokens per sequence, channels per head)
SHAPES = {
    "spatial": (1, 5, 4096, 64),  # one 64x64 latent frame, 320 channels
    "temporal": (4096, 5, 14, 64),  # every pixel of that frame across 14 video frames
}
QUERY_CHUNK = 1024
METHODS = {
    "naive": naive_attention,
    "attention": attention,
    f"attention, query_chunk_size={QUERY_CHUNK}": lambda q, k, v: attention(q, k, v, query_chunk_size=QUERY_CHUNK),
}
VIDEO = dict(frames=14, latent_size=32)  # one 14-frame clip of 32x32 latents (256x256 pixels)


def qkv(shape_name: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    return tuple(torch.randn(SHAPES[shape_name], generator=generator) for _ in range(3))


def memory_point(shape_name: str, method: str) -> dict:
    """Peak extra memory of one attention call; runs inside a fresh process."""
    torch.set_num_threads(THREADS)
    q, k, v = qkv(shape_name)
    before = profiling.resident_mib()
    with torch.no_grad():
        METHODS[method](q, k, v)
    return {"peak_mb": max(profiling.peak_resident_mib() - before, 0.0)}


def memory_in_subprocess(shape_name: str, method: str) -> float:
    command = [sys.executable, __file__, "--point", shape_name, method]
    return json.loads(subprocess.run(command, check=True, capture_output=True, text=True).stdout)["peak_mb"]


def median_seconds(function, *args, repeats: int = 5) -> float:
    function(*args)  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function(*args)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def interleaved_median_seconds(functions: dict, repeats: int = 7) -> dict:
    """Median time of each function, calling them in turn so that a busy spell of a shared machine hits all."""
    times = {name: [] for name in functions}
    for function in functions.values():
        function()  # warm-up
    for _ in range(repeats):
        for name, function in functions.items():
            start = time.perf_counter()
            function()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


@torch.no_grad()
def attention_rows() -> list[dict]:
    rows = []
    for shape_name in SHAPES:
        q, k, v = qkv(shape_name)
        torch.testing.assert_close(attention(q, k, v), naive_attention(q, k, v), atol=1e-4, rtol=1e-4)
        for method, function in METHODS.items():
            if "query_chunk_size" in method and SHAPES[shape_name][2] <= QUERY_CHUNK:
                continue  # sequences shorter than a chunk are not split: same as plain attention
            seconds = median_seconds(function, q, k, v)
            rows.append({"shape": shape_name, "method": method, "seconds": seconds,
                         "peak_mb": memory_in_subprocess(shape_name, method)})
            print(rows[-1], flush=True)
    return rows


def tiny_svd_inputs(in_channels: int, context_dim: int, adm_in_channels: int) -> dict:
    generator = torch.Generator().manual_seed(0)
    frames, size = VIDEO["frames"], VIDEO["latent_size"]
    return {
        "x": torch.randn(frames, in_channels, size, size, generator=generator),  # (b t) c h w, b = 1
        "context": torch.randn(frames, 1, context_dim, generator=generator),  # the image embedding, per frame
        "y": torch.randn(frames, adm_in_channels, generator=generator),  # embedded fps, motion, cond_aug
        "sigma": torch.full((frames,), 1.0),
    }


def diffusers_twin(config):
    """diffusers' SVD UNet with the preset's sizes (random weights: its key names differ from the official)."""
    from diffusers import UNetSpatioTemporalConditionModel

    levels = len(config.channel_mult)
    channels = tuple(config.model_channels * mult for mult in config.channel_mult)
    return UNetSpatioTemporalConditionModel(
        in_channels=config.in_channels, out_channels=config.out_channels,
        down_block_types=("CrossAttnDownBlockSpatioTemporal",) * levels,
        up_block_types=("CrossAttnUpBlockSpatioTemporal",) * levels,
        block_out_channels=channels, layers_per_block=config.num_res_blocks,
        cross_attention_dim=config.context_dim,
        num_attention_heads=tuple(c // config.num_head_channels for c in channels),
        addition_time_embed_dim=config.adm_in_channels // 3,  # diffusers embeds the 3 numbers itself
        projection_class_embeddings_input_dim=config.adm_in_channels,
        num_frames=VIDEO["frames"],
    ).eval()


@torch.no_grad()
def video_unet_row() -> dict:
    from minigen.presets import get_preset, parameter_count

    config = get_preset("tiny_svd").network
    if config.attention_resolutions != (2, 1) or len(config.channel_mult) != 2:
        raise RuntimeError("diffusers_twin puts attention at every level; update it to tiny_svd's new layout.")
    torch.manual_seed(0)
    unet = config.build().eval()
    inputs = tiny_svd_inputs(config.in_channels, config.context_dim, config.adm_in_channels)
    frames = VIDEO["frames"]

    def minigen_forward():
        unet(inputs["x"], inputs["sigma"], context=inputs["context"], y=inputs["y"], num_video_frames=frames,
             image_only_indicator=torch.zeros(1, frames))

    row = {"minigen_params": parameter_count(unet)}
    try:
        twin = diffusers_twin(config)
    except ImportError:
        return row | {"minigen_seconds": median_seconds(minigen_forward)}
    sample = inputs["x"][None]  # b t c h w
    added_time_ids = torch.tensor([[6.0, 127.0, 0.02]])  # fps_id, motion_bucket_id, cond_aug

    def diffusers_forward():
        twin(sample, inputs["sigma"][:1], encoder_hidden_states=inputs["context"][:1], added_time_ids=added_time_ids)

    seconds = interleaved_median_seconds({"minigen": minigen_forward, "diffusers": diffusers_forward})
    return row | {"minigen_seconds": seconds["minigen"], "diffusers_seconds": seconds["diffusers"],
                  "diffusers_params": parameter_count(twin)}


def markdown(rows: list[dict], video: dict) -> str:
    naive = {row["shape"]: row for row in rows if row["method"] == "naive"}
    lines = [
        "## Attention: SDPA vs naive softmax(QK^T)V, and the video UNet vs diffusers",
        "",
        f"Machine: {cpu_machine()}, {platform.machine()}, {THREADS} threads "
        f"(`torch.set_num_threads({THREADS})`), PyTorch {torch.__version__}, float32, no gradients. "
        "Inputs `q, k, v` of shape (sequences, heads, tokens, 64); spatial = the 64x64 tokens of one "
        "SVD-sized latent frame, temporal = each of those 4096 pixels across 14 frames. "
        "Time: median of 5 calls; "
        "peak memory: extra resident memory of a fresh process during one call, the output included "
        "(temporal: 73 MB of it). All compute the same result (checked with `torch.testing.assert_close`).",
        "",
        "On this CPU PyTorch's fused kernel already walks over the keys in blocks, so the score matrix is never "
        "held and `query_chunk_size` has nothing left to save; it bounds memory where a kernel does build the "
        "matrix (SDPA's math fallback). For 14-token temporal sequences there is little to fuse and the naive "
        "formula is a little faster.",
        "",
        "| tokens | method | time (ms) | time / naive | peak memory (MB) | memory / naive |",
        "|---|---|---|---|---|---|",
    ]
    for row in rows:
        base = naive[row["shape"]]
        shape = "x".join(str(size) for size in SHAPES[row["shape"]])
        lines.append(f"| {row['shape']} ({shape}) | `{row['method']}` | {1000 * row['seconds']:.1f} | "
                     f"{row['seconds'] / base['seconds']:.2f} | {row['peak_mb']:.0f} | "
                     f"{row['peak_mb'] / max(base['peak_mb'], 1e-9):.2f} |")
    lines += ["", *video_markdown(video), "",
              "Regenerate: `python benchmarks/attention.py` (20 s on 2 idle cores, minutes on a busy machine)."]
    return "\n".join(lines)


def video_markdown(video: dict) -> list[str]:
    clip = f"{VIDEO['frames']} frames of {VIDEO['latent_size']}x{VIDEO['latent_size']} latents"
    minigen_ms = 1000 * video["minigen_seconds"]
    if "diffusers_seconds" not in video:
        return [f"Video UNet (tiny_svd preset, {clip}): minigen {minigen_ms:.0f} ms per forward pass; "
                "diffusers is not installed, so there is no peer to compare with."]
    import diffusers

    diffusers_ms = 1000 * video["diffusers_seconds"]
    return [
        f"**Video UNet, one forward pass** (tiny_svd preset: 32-64 channels, {clip}, batch 1). The peer is "
        f"diffusers {diffusers.__version__} `UNetSpatioTemporalConditionModel` built with the same sizes "
        "(it embeds the three SVD scalars itself, minigen receives them embedded); both have **random "
        "weights**, since diffusers names its parameters differently and no key mapping is written here. "
        "Median of 7 forward passes each, the two networks called in turn.",
        "",
        "| network | parameters | time (ms) | time / diffusers |",
        "|---|---|---|---|",
        f"| minigen `VideoUNet` | {video['minigen_params']:,} | {minigen_ms:.0f} | "
        f"{minigen_ms / diffusers_ms:.2f} |",
        f"| diffusers `UNetSpatioTemporalConditionModel` | {video['diffusers_params']:,} | {diffusers_ms:.0f} | 1.00 |",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--point", nargs=2, metavar=("SHAPE", "METHOD"), help="measure one memory point")
    args = parser.parse_args()
    if args.point:
        print(json.dumps(memory_point(*args.point)))
        return
    torch.set_num_threads(THREADS)
    rows = attention_rows()
    video = video_unet_row()
    print(video)
    write_section("attention", markdown(rows, video))


if __name__ == "__main__":
    main()
