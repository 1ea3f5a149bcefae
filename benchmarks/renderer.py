"""How fast minigen.data.scenes renders its three datasets on the CPU, at their default sizes.

Samples per second for OrbitDataset (21 views), MovingObjectDataset (3 times x 5 views) and MotionVideoDataset
(8 frames), all 64 x 64, with 1 and 2 threads. Each figure is the median of REPEATS passes over the same
SAMPLES items (so every pass renders the same shapes), after one warm-up item. Also how each world frames its
objects, over FRAMING_SAMPLES items: the object's share of a frame, and how far its farthest pixel lies from the
centre (as a share of the way to the frame's edge), MovingObjectDataset also at the renderer's 40° field of view it
used before it was reframed. Prints markdown tables and writes them, with the machine, to
benchmarks/results/renderer.json.

    python benchmarks/renderer.py             # about two minutes on 2 idle CPU cores
    python benchmarks/renderer.py --samples 8 --repeats 1   # a quick look
"""

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import torch
from _report import cpu_machine  # benchmarks/ is the script's folder

from minigen.data.scenes import MotionVideoDataset, MovingObjectDataset, OrbitDataset

RESULTS = Path(__file__).resolve().parent / "results" / "renderer.json"
DATASETS = {
    "OrbitDataset (21 views)": OrbitDataset,
    "MovingObjectDataset (3 x 5 views)": MovingObjectDataset,
    "MotionVideoDataset (8 frames)": MotionVideoDataset,
}
THREADS = (1, 2)
FRAMING_SAMPLES = 300


def samples_per_second(dataset, samples: int, repeats: int) -> float:
    """Median rate of reading items 1 .. samples, over `repeats` passes (item 0 warms up)."""
    dataset[0]
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        for index in range(1, samples + 1):
            dataset[index]
        seconds.append(time.perf_counter() - start)
    return samples / statistics.median(seconds)


def framing(dataset, samples: int) -> dict:
    """The object's mean share of a frame, and its farthest pixel from the centre over every frame of `samples`
    items (1: the frame's edge), where the object is what is not white."""
    shares, farthest = [], 0.0
    for index in range(samples):
        frames = dataset[index]["frames"]
        objects = (frames < 0.9).any(-3).flatten(0, -3)  # n H W
        size = objects.shape[-1]
        centred = torch.arange(size) - (size - 1) / 2
        distance = torch.maximum(centred[:, None].abs(), centred[None, :].abs()) + 0.5  # to the pixel's outer edge
        shares.append(objects.float().mean().item())
        farthest = max(farthest, (distance * objects).amax().item() / (size / 2))
    return {"object share of a frame": statistics.mean(shares), "farthest object pixel": farthest}


def framing_table(samples: int) -> tuple[dict, str]:
    worlds = {name: dataset_class(length=samples) for name, dataset_class in DATASETS.items()}
    worlds["MovingObjectDataset at 40° (before it was reframed)"] = MovingObjectDataset(length=samples, fov_deg=40.0)
    measured = {name: framing(dataset, samples) for name, dataset in worlds.items()}
    rows = [f"| world ({samples} items, 64 x 64) | object's share of a frame | farthest object pixel, of the way "
            "to the edge |", "|---|---:|---:|"]
    rows += [f"| {name} | {m['object share of a frame']:.0%} | {m['farthest object pixel']:.0%} |"
             for name, m in measured.items()]
    return measured, "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=40, help="items per pass")
    parser.add_argument("--repeats", type=int, default=3, help="passes; the median counts")
    args = parser.parse_args()
    load_before = os.getloadavg()[0]  # other work on a shared machine slows the 2-thread figures most
    rates = {}
    for name, dataset_class in DATASETS.items():
        dataset = dataset_class(length=args.samples + 1)
        for threads in THREADS:
            torch.set_num_threads(threads)
            rates[f"{name}, {threads} thread{'s' * (threads > 1)}"] = samples_per_second(dataset, args.samples,
                                                                                       args.repeats)
    rows = ["| dataset (64 x 64) | " + " | ".join(f"{t} thread{'s' * (t > 1)}" for t in THREADS) + " |",
            "|---|" + "---:|" * len(THREADS)]
    for name in DATASETS:
        cells = [f"{rates[f'{name}, {t} thread' + 's' * (t > 1)]:.1f} samples/s" for t in THREADS]
        rows.append(f"| {name} | " + " | ".join(cells) + " |")
    table = "\n".join(rows)
    print(table)
    torch.set_num_threads(2)
    measured_framing, framing_markdown = framing_table(FRAMING_SAMPLES)
    print("\n" + framing_markdown)
    print(f"\n{cpu_machine()}, load average {load_before:.1f} before the run, torch {torch.__version__}, "
          f"{args.samples} samples x {args.repeats} passes (median)")
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps({
        "samples_per_second": rates, "markdown": table, "framing": measured_framing,
        "framing markdown": framing_markdown, "machine": cpu_machine(), "load_average_before": load_before,
        "python": platform.python_version(), "torch": torch.__version__, "samples": args.samples,
        "repeats": args.repeats,
    }, indent=2) + "\n")


if __name__ == "__main__":
    main()
