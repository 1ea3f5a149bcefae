"""Peak memory of the temporal decoder against the number of frames, for several chunk sizes.

Each point runs in a fresh Python process: its peak resident memory during the decode (VmHWM, reset just
before decoding: `minigen.profiling`), minus its resident memory just before, is the memory the decode needed.
Writes the `vae_memory` section of docs/benchmarks.md and docs/figures/vae_memory.png.

    python benchmarks/vae_memory.py             # every point (about a minute on 2 CPU cores)
    python benchmarks/vae_memory.py --point 16 4  # one point: 16 frames, chunks of 4; prints JSON
"""

import argparse
import json
import platform
import subprocess
import sys
import time
from pathlib import Path

FRAME_COUNTS = (4, 8, 16, 48)
CHUNK_SIZES = (1, 2, 4, None)  # None: all frames in one call
PRESET, LATENT_SIZE = "tiny_svd", 8  # latents 8x8 -> images 64x64
FIGURE = Path(__file__).resolve().parent.parent / "docs" / "figures" / "vae_memory.png"


def measure_point(num_frames: int, chunk_size: int | None) -> dict:
    """Build the codec, then decode `num_frames` latents; runs inside the fresh process."""
    import torch

    from minigen.presets import get_preset
    from minigen.profiling import peak_resident_mib, reset_peak, resident_mib

    torch.set_num_threads(1)
    torch.manual_seed(0)
    first_stage = get_preset(PRESET).first_stage_model.build().eval()
    z = torch.randn(num_frames, 4, LATENT_SIZE, LATENT_SIZE)
    before = resident_mib()
    reset_peak()  # else the peak could be the interpreter's start-up, or a parent's (getrusage carries it over)
    start = time.perf_counter()
    with torch.no_grad():
        images = first_stage.decode(z, chunk_size=chunk_size)
    seconds = time.perf_counter() - start
    return {"frames": num_frames, "chunk_size": chunk_size, "peak_mb": peak_resident_mib() - before, "seconds": seconds,
            "output_mb": images.numel() * images.element_size() / 2**20}


def measure_in_subprocess(num_frames: int, chunk_size: int | None) -> dict:
    command = [sys.executable, __file__, "--point", str(num_frames), str(chunk_size or 0)]
    return json.loads(subprocess.run(command, check=True, capture_output=True, text=True).stdout)


def label(chunk_size: int | None) -> str:
    return "all" if chunk_size is None else str(chunk_size)


def markdown(results: list[dict]) -> str:
    header = "| frames | " + " | ".join(f"chunk {label(c)}" for c in CHUNK_SIZES) + " |"
    lines = [header, "|---" * (len(CHUNK_SIZES) + 1) + "|"]
    for n in FRAME_COUNTS:
        cells = [next(r for r in results if r["frames"] == n and r["chunk_size"] == c) for c in CHUNK_SIZES]
        row = " | ".join(f"{r['peak_mb']:.0f} MB ({r['seconds']:.2f} s)" for r in cells)
        lines.append(f"| {n} | {row} |")
    return "\n".join([
        "## Decoding memory: chunk size, not frame count",
        "",
        f"Peak extra memory (and time) of `decode(z, chunk_size)` with the `{PRESET}` temporal decoder, "
        f"{LATENT_SIZE}x{LATENT_SIZE} latents -> {8 * LATENT_SIZE}x{8 * LATENT_SIZE} frames, one thread, "
        f"each point in a fresh process (its peak resident memory during the decode, VmHWM reset just before "
        f"decoding, minus its resident memory then). "
        f"Machine: {platform.machine()} CPU, Python {platform.python_version()}. "
        "Written by `python benchmarks/vae_memory.py`.",
        "",
        *lines,
        "",
        "With a fixed chunk size the peak stays flat as the clip grows; only the decoded frames themselves "
        f"({results[0]['output_mb'] / results[0]['frames']:.2f} MB a frame here) accumulate. Decoding all "
        "frames at once grows with the clip. With the temporal decoder the chunk size also changes the "
        "pixels (frames mix only inside a chunk), see notebook 05.",
        "",
        "![peak memory against frames](figures/vae_memory.png)",
    ])


def plot(results: list[dict]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(5, 3.2), dpi=100)
    for chunk_size in CHUNK_SIZES:
        points = [r for r in results if r["chunk_size"] == chunk_size]
        axis.plot([r["frames"] for r in points], [r["peak_mb"] for r in points], marker="o",
                  label=f"chunk {label(chunk_size)}")
    axis.set(xlabel="frames decoded", ylabel="peak extra memory (MB)", title=f"{PRESET} decode, CPU")
    axis.legend()
    figure.tight_layout()
    FIGURE.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(FIGURE)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--point", nargs=2, type=int, metavar=("FRAMES", "CHUNK"), help="CHUNK 0 means all")
    args = parser.parse_args()
    if args.point:
        frames, chunk = args.point
        print(json.dumps(measure_point(frames, chunk or None)))
        return
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from _report import write_section

    results = [measure_in_subprocess(n, c) for c in CHUNK_SIZES for n in FRAME_COUNTS]
    plot(results)
    write_section("vae_memory", markdown(results))
    print(markdown(results))


if __name__ == "__main__":
    main()
