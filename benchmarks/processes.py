"""Two single-thread processes against one two-thread process, for tiny_sv4d2's training on the 2-core CPU.

tiny_sv4d2's recipe runs as `torchrun --nproc_per_node=2 -m minigen.train tiny_sv4d2`. This measures why, side by
side in one run: `Trainer.train_step` with the recipe's own TrainConfig (16 windows a step, fp32, random weights)
over a cache of CACHE_EXAMPLES videos, and the time to build that cache (`worlds.LatentCache`, shared out between
the processes), in
- one process with 2 threads (`python -m minigen.train tiny_sv4d2` on this machine);
- two processes with 1 thread each under torchrun (gloo), 8 windows each, the gradients averaged by
  DistributedDataParallel: the same step (minigen/tests/test_train.py checks it).
Each layout runs ROUNDS times, alternating, each in fresh processes; the medians are reported. Writes
benchmarks/results/processes.json and the `processes` section of docs/benchmarks.md.

    python benchmarks/processes.py          # about 2 minutes on 2 idle CPU cores
"""

import argparse
import dataclasses
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from _report import cpu_machine, write_section  # benchmarks/ is the script's folder

from minigen.recipes import get_recipe, tiny_sv4d2, worlds
from minigen.train import Trainer, join_world

CACHE_EXAMPLES = 64  # videos rendered and encoded into the measured cache
WARMUP, STEPS = 3, 12  # training steps before timing, timed steps
ROUNDS = 2  # runs of each layout, alternating
RESULTS = Path(__file__).resolve().parent / "results" / "processes.json"
LAYOUTS = {  # name -> (command before the script, threads per process)
    "1 process x 2 threads": ([sys.executable], 2),
    "2 processes x 1 thread (torchrun)": ([sys.executable, "-m", "torch.distributed.run", "--standalone",
                                           "--nproc_per_node=2"], 1),
}


def worker(out: Path) -> None:
    """One process of one layout: build the cache, time the steps; process 0 writes what it measured to `out`."""
    world = join_world("cpu")
    start = time.perf_counter()
    cache = worlds.LatentCache(tiny_sv4d2.dataset(), CACHE_EXAMPLES)
    cache_s = time.perf_counter() - start
    recipe = dataclasses.replace(get_recipe("tiny_sv4d2"), dataset=lambda: cache)
    with tempfile.TemporaryDirectory() as folder:  # train_step writes nothing; the Trainer wants a run folder
        trainer = Trainer(recipe, recipe.config, Path(folder), world, progress=False)
        steps = []
        for number in range(WARMUP + STEPS):
            start = time.perf_counter()
            trainer.train_step()
            if number >= WARMUP:
                steps.append(time.perf_counter() - start)
    if world.is_main:
        out.write_text(json.dumps({"cache_s": cache_s, "step_s": steps, "threads": torch.get_num_threads(),
                                   "processes": world.size, "batch_size": recipe.config.batch_size}))


def run_layout(name: str) -> dict:
    """One run of a layout, in fresh processes; what its process 0 measured."""
    command, threads = LAYOUTS[name]
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "result.json"
        done = subprocess.run([*command, __file__, "--worker", str(out)], capture_output=True, text=True,
                              env={**os.environ, "OMP_NUM_THREADS": str(threads)}, timeout=900)
        if done.returncode != 0:
            raise RuntimeError(f"{name} failed:\n{done.stderr[-3000:]}")
        return json.loads(out.read_text())


def summary(runs: list[dict]) -> dict:
    steps = [step for run in runs for step in run["step_s"]]
    step = statistics.median(steps)
    return {"runs": runs, "step_median_s": step, "windows_per_s": runs[0]["batch_size"] / step,
            "cache_median_s": statistics.median(run["cache_s"] for run in runs)}


def table(layouts: dict) -> str:
    base = layouts["1 process x 2 threads"]
    rows = ["| layout | step of 16 windows (median) | windows / s | speed ratio | cache of "
            f"{CACHE_EXAMPLES} videos | cache ratio |", "|---|---:|---:|---:|---:|---:|"]
    for name, result in layouts.items():
        rows.append(f"| {name} | {result['step_median_s'] * 1e3:.0f} ms | {result['windows_per_s']:.1f} | "
                    f"{base['step_median_s'] / result['step_median_s']:.2f} | {result['cache_median_s']:.1f} s | "
                    f"{base['cache_median_s'] / result['cache_median_s']:.2f} |")
    return "\n".join(rows)


def report(results: dict, markdown: str) -> str:
    return f"""## Two processes or two threads: tiny_sv4d2's training on the 2-core CPU

Machine: {results['machine']}, PyTorch {results['torch']}; load average {results['load_average_before']:.1f}
before the run. `Trainer.train_step` with tiny_sv4d2's TrainConfig (16 windows a step, fp32, random weights) over
a cache of {CACHE_EXAMPLES} videos, median of {STEPS} steps after {WARMUP}, over {ROUNDS} runs of each layout,
alternating; and the time to build that cache (render + encode, shared out between the processes under
torchrun). A window is 12 latent images of 8x8: each layer is too little work for two threads to share well, so two
single-thread processes, each with half the batch and gloo averaging their gradients, step faster than one process
with two threads. The speed ratio is the two-thread step's time over the layout's; data/README.md gives the
recipe's own run under torchrun.

{markdown}

Raw figures: `benchmarks/results/processes.json`. Regenerate: `python benchmarks/processes.py`
({results['wall_s']:.0f} s here)."""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--worker", type=Path, help=argparse.SUPPRESS)  # one process of one layout
    args = parser.parse_args()
    if args.worker:
        worker(args.worker)
        return
    started, load_before = time.perf_counter(), os.getloadavg()[0]
    runs = {name: [] for name in LAYOUTS}
    for round_ in range(ROUNDS):
        for name in LAYOUTS:
            runs[name].append(run_layout(name))
            print(f"round {round_ + 1}, {name}: median step {statistics.median(runs[name][-1]['step_s']):.3f} s",
                  flush=True)
    layouts = {name: summary(layout_runs) for name, layout_runs in runs.items()}
    results = {"layouts": layouts, "machine": cpu_machine(),
               "load_average_before": load_before, "python": platform.python_version(), "torch": torch.__version__,
               "cache_examples": CACHE_EXAMPLES, "warmup": WARMUP, "steps": STEPS, "rounds": ROUNDS,
               "wall_s": time.perf_counter() - started}
    markdown = table(layouts)
    print(markdown)
    RESULTS.write_text(json.dumps(results | {"markdown": markdown}, indent=2) + "\n")
    write_section("processes", report(results, markdown))


if __name__ == "__main__":
    main()
