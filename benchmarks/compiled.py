"""Compiled and lower-precision inference on the CPU: torch.compile (inductor), bfloat16 autocast, channels_last.

For each network, one guided forward pass (the batch doubled, as classifier-free guidance runs it) in six ways:
eager float32 (the baseline, with all threads), eager float32 with one thread, eager with bfloat16 autocast, eager
float32 in `channels_last` memory format, `torch.compile` (inductor, default mode) in float32, and compiled with
bfloat16 autocast. Each way reports the median time of several calls after its warm-up (for the compiled ones the
first call, which compiles, is timed apart), the speed-up over eager float32, and the largest difference of its
output from eager float32, relative to the output's standard deviation (so 1e-2 means an error of 1% of the
output's spread).

Networks: the trained course models' UNets at the sizes the course runs them (tiny_sd, tiny_svd, tiny_sv4d2,
random weights: the speed does not depend on them), and an official-width slice of SVD's UNet: its first level
(320 channels: a video ResBlock and a spatio-temporal transformer with 1024-d context) and middle block, on
2 x 14 frames of 16x16 latents, which is where a full-size SVD step spends its time per pixel.

Run `python benchmarks/compiled.py` (about 10 minutes on 2 cores, mostly compiling). Writes the `compiled` section
of docs/benchmarks.md and benchmarks/results/compiled.json; `--device cuda` measures the same on a GPU (section
`compiled_gpu`, results/compiled_cuda.json).
"""

import argparse
import json
import platform
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import write_section  # noqa: E402
from gpu_full_scale import network_inputs  # noqa: E402

from minigen.presets import get_preset  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "compiled.json"
REPEATS = 5
# name: (preset whose network and conditioning shapes it uses, per-sample frames and latent size, config changes)
CASES = {
    "tiny_sd": ("tiny_sd", dict(frames=1, height=16, width=16, tokens=77), {}),
    "tiny_svd": ("tiny_svd", dict(frames=8, height=8, width=8, tokens=1, video=True), {}),
    "tiny_sv4d2": ("tiny_sv4d2", dict(frames=3 * 4, height=8, width=8, views=4), {}),
    "svd, official-width slice": ("svd", dict(frames=14, height=16, width=16, tokens=1, video=True),
                                  dict(channel_mult=(1,), num_res_blocks=1, attention_resolutions=(1,))),
}
WAYS = ("eager fp32", "eager fp32, 1 thread", "eager bf16 autocast", "eager channels_last", "compiled fp32",
        "compiled bf16 autocast")
REGENERATE = "python benchmarks/compiled.py"


def build(case: str, device: str = "cpu") -> tuple[torch.nn.Module, dict]:
    """The case's network (random weights, float32, eval) and its guided-pass inputs, on `device`."""
    preset, sizes, changes = CASES[case]
    torch.manual_seed(0)
    network = replace(get_preset(preset).network, **changes).build().eval()
    for parameter in network.parameters():  # the output layers start at zero (as trained): give them weights,
        if not parameter.any():  # or every way would output zeros and agree trivially
            torch.nn.init.normal_(parameter, std=0.02)
    inputs = network_inputs(preset, network, torch.float32, device=device, case=sizes)
    return network.to(device), inputs


def way_of_running(network: torch.nn.Module, way: str, device: str = "cpu"):
    """A function of the inputs that runs `network` the way `way` says."""
    if way == "eager channels_last":
        for module in network.modules():  # 2D convolutions only: the temporal layers' 3D kernels have no such format
            if isinstance(module, torch.nn.Conv2d):
                module.to(memory_format=torch.channels_last)
    model = torch.compile(network) if way.startswith("compiled") else network
    autocast = "bf16" in way
    threads = 1 if way.endswith("1 thread") else torch.get_num_threads()  # small ops can lose more to syncing
    # threads than they gain from them

    def run(inputs: dict) -> torch.Tensor:
        if way == "eager channels_last":
            inputs = {**inputs, "x": inputs["x"].contiguous(memory_format=torch.channels_last)}
        all_threads = torch.get_num_threads()
        torch.set_num_threads(threads)
        with torch.inference_mode(), torch.autocast(device, dtype=torch.bfloat16, enabled=autocast):
            output = model(**inputs).float()
        torch.set_num_threads(all_threads)
        if device == "cuda":
            torch.cuda.synchronize()
        return output

    return run


def measure(case: str, device: str = "cpu") -> list[dict]:
    baseline = None
    rows = []
    for way in WAYS:
        network, inputs = build(case, device)  # the same weights (seeded) for every way, none changed by another
        run = way_of_running(network, way, device)
        start = time.perf_counter()
        output = run(inputs)  # warm-up; compiles the compiled ways
        first_call = time.perf_counter() - start
        times = []
        for _ in range(REPEATS):
            start = time.perf_counter()
            run(inputs)
            times.append(time.perf_counter() - start)
        if baseline is None:
            baseline = output
        difference = ((output - baseline).abs().max() / baseline.std()).item()
        rows.append({"case": case, "way": way, "seconds": statistics.median(times), "first_call_s": first_call,
                     "relative_max_difference": difference})
        print(rows[-1], flush=True)
        torch._dynamo.reset()
    return rows


def report(results: dict) -> str:
    lines = [
        "## Compiled and lower-precision inference (CPU)",
        "",
        f"Machine: {results['machine']}, {results['threads']} threads, PyTorch {results['torch']}. Written by "
        f"`{REGENERATE}`. One guided forward pass per call (batch doubled), random weights; time: median of "
        f"{REPEATS} calls after a warm-up; first call: the warm-up itself, which for the compiled ways includes "
        "compiling; difference: the largest absolute difference from eager float32, over the output's standard "
        "deviation.",
        "",
        "| network | way | seconds | speed-up over eager fp32 | first call (s) | max difference / std |",
        "|---|---|---|---|---|---|",
    ]
    for case in dict.fromkeys(row["case"] for row in results["rows"]):  # the cases measured, in order
        rows = [row for row in results["rows"] if row["case"] == case]
        base = next(row for row in rows if row["way"] == "eager fp32")["seconds"]
        for row in rows:
            lines.append(f"| {case} | {row['way']} | {row['seconds']:.4f} | {base / row['seconds']:.2f}x | "
                         f"{row['first_call_s']:.1f} | {row['relative_max_difference']:.1e} |")
    return "\n".join(lines + ["", "Where compiling pays:", ""] + break_even_lines(results["rows"]))


def break_even_lines(rows: list[dict]) -> list[str]:
    """For each compiled way: after how many calls its compile time is won back against the eager way of the same
    precision, or that it never is."""
    seconds = {(row["case"], row["way"]): row for row in rows}
    lines = []
    for (case, way), row in seconds.items():
        if not way.startswith("compiled"):
            continue
        eager = seconds[case, way.replace("compiled", "eager")]
        saved = eager["seconds"] - row["seconds"]
        verdict = (f"pays after {row['first_call_s'] / saved:,.0f} calls" if saved > 0 else
                   "never pays: slower than eager")
        lines.append(f"- {case}, {way}: {eager['seconds']:.4f} -> {row['seconds']:.4f} s a call after "
                     f"{row['first_call_s']:.0f} s of compiling: {verdict}.")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--cases", nargs="+", choices=list(CASES), default=list(CASES))
    parser.add_argument("--report", action="store_true", help="rewrite the section from the saved JSON")
    args = parser.parse_args()
    results_path = RESULTS if args.device == "cpu" else RESULTS.with_stem("compiled_cuda")
    if args.report:
        results = json.loads(results_path.read_text())
    else:
        torch.set_num_threads(args.threads)
        rows = [row for case in args.cases for row in measure(case, args.device)]
        machine = torch.cuda.get_device_name() if args.device == "cuda" else platform.processor() or platform.machine()
        results = {"machine": machine, "device": args.device, "threads": args.threads, "torch": torch.__version__,
                   "rows": rows}
        results_path.write_text(json.dumps(results, indent=1))
    write_section("compiled" if args.device == "cpu" else "compiled_gpu", report(results))

if __name__ == "__main__":
    main()
