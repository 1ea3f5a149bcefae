"""Data loading as a share of a training step, for the three world recipes (tiny_i2v, tiny_sv3d, tiny_sv4d2).

For each recipe, in one process with 1 thread:
1. one-time cost: building its `worlds.LatentCache` (render + VAE encode) for EXAMPLES examples, per example and
   extrapolated to the recipe's TRAIN_EXAMPLES;
2. per step: `Trainer.train_step` with the recipe's own TrainConfig (batch size, precision), over that small cache (not
   the recipe's TRAIN_EXAMPLES: a step reads EXAMPLES-many cached examples as it would read 2000), against the time
   spent in data work: reading the cache, `make_batch` and `condition` (the conditioner's frozen CLIP and VAE
   encoders), everything before the network. Medians of STEPS steps after WARMUP. Beside it, what a step would add
   if it rendered and encoded its batch instead of reading the cache (per-example cost of 1. x batch size);
3. renderer throughput from benchmarks/results/renderer.json (benchmarks/renderer.py), not measured again.

Prints markdown tables, writes benchmarks/results/data_loading.json and the `data_loading` section of
docs/benchmarks.md. Engines have random weights (the recipes' trained data/ files are not loaded) and the worlds VAE
of data/tiny_worlds_vae.safetensors.

    python benchmarks/data_loading.py        # about a minute on 2 busy CPU cores
"""

import dataclasses
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import cpu_machine, write_section  # noqa: E402

from minigen.recipes import get_recipe, tiny_i2v, tiny_sv3d, tiny_sv4d2, worlds  # noqa: E402
from minigen.train import Trainer, World, check_config  # noqa: E402

RECIPES = {"tiny_i2v": tiny_i2v, "tiny_sv3d": tiny_sv3d, "tiny_sv4d2": tiny_sv4d2}  # name -> module
EXAMPLES = 32  # examples rendered and encoded into the measured cache
WARMUP, STEPS = 2, 7  # training steps before timing, timed steps
RESULTS = Path(__file__).resolve().parent / "results" / "data_loading.json"
RENDERER = Path(__file__).resolve().parent / "results" / "renderer.json"


class Stopwatch:
    """Seconds spent inside the functions it wraps, summed until `reset`."""

    def __init__(self):
        self.seconds = 0.0

    def reset(self) -> float:
        seconds, self.seconds = self.seconds, 0.0
        return seconds

    def wrap(self, function):
        def timed(*args, **kwargs):
            start = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                self.seconds += time.perf_counter() - start
        return timed


class TimedDataset(torch.utils.data.Dataset):
    """A dataset whose item reads are timed by `stopwatch` (rendering for a world, a cache read for a cache)."""

    def __init__(self, dataset, stopwatch: Stopwatch):
        self.dataset, self.stopwatch = dataset, stopwatch
        self.read = stopwatch.wrap(dataset.__getitem__)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> dict:
        return self.read(index)


def cache_cost(module) -> tuple[worlds.LatentCache, dict]:
    """The recipe's world rendered and encoded into a LatentCache of EXAMPLES examples, and what that took."""
    render = Stopwatch()
    start = time.perf_counter()
    cache = worlds.LatentCache(TimedDataset(module.dataset(), render), EXAMPLES)
    total = time.perf_counter() - start
    frames = cache.examples[0]["frames"][..., 0, 0, 0].numel()
    return cache, {"examples": EXAMPLES, "frames_per_example": frames,
                   "render_s_per_example": render.seconds / EXAMPLES,
                   "encode_s_per_example": (total - render.seconds) / EXAMPLES,  # incl. loading the VAE once
                   "total_s_per_example": total / EXAMPLES,
                   "train_examples": module.TRAIN_EXAMPLES,
                   "extrapolated_total_s": total / EXAMPLES * module.TRAIN_EXAMPLES}


def step_cost(name: str, cache: worlds.LatentCache) -> dict:
    """Median train_step time and the median part of it spent reading the cache, in make_batch and in condition."""
    data = Stopwatch()
    recipe = get_recipe(name)
    recipe = dataclasses.replace(recipe, dataset=lambda: TimedDataset(cache, data),
                                 make_batch=data.wrap(recipe.make_batch), condition=data.wrap(recipe.condition))
    config, world = recipe.config, World(0, 1, torch.device("cpu"))
    check_config(config, world)
    with tempfile.TemporaryDirectory() as out:  # train_step writes nothing; the Trainer wants a run folder
        trainer = Trainer(recipe, config, Path(out), world, progress=False)
        steps, datas = [], []
        for number in range(WARMUP + STEPS):
            data.reset()
            start = time.perf_counter()
            trainer.train_step()
            step, data_part = time.perf_counter() - start, data.reset()
            if number >= WARMUP:
                steps.append(step)
                datas.append(data_part)
    return {"batch_size": config.batch_size, "precision": config.precision, "step_s": steps, "data_s": datas,
            "step_median_s": statistics.median(steps), "data_median_s": statistics.median(datas),
            "data_share": statistics.median(datas) / statistics.median(steps)}


def renderer_rates() -> dict | None:
    """benchmarks/renderer.py's samples/s at 1 thread, if it has been run."""
    if not RENDERER.exists():
        return None
    results = json.loads(RENDERER.read_text())
    return {name.removesuffix(", 1 thread"): rate for name, rate in results["samples_per_second"].items()
            if name.endswith(", 1 thread")}


def tables(results: dict) -> str:
    rows = ["| recipe | frames / example | render / example | encode / example | cache for TRAIN_EXAMPLES "
            "(extrapolated) |", "|---|---:|---:|---:|---:|"]
    for name, result in results["recipes"].items():
        cache = result["cache"]
        rows.append(f"| {name} | {cache['frames_per_example']} | {cache['render_s_per_example'] * 1e3:.0f} ms | "
                    f"{cache['encode_s_per_example'] * 1e3:.0f} ms | {cache['train_examples']} examples: "
                    f"{cache['extrapolated_total_s']:.0f} s |")
    rows += ["", "| recipe | batch | step (median) | data work (median) | data / step | "
             "render + encode the batch (no cache) | data / step without the cache |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for name, result in results["recipes"].items():
        step, uncached = result["step"], result["uncached_batch_s"]
        rows.append(f"| {name} | {step['batch_size']} | {step['step_median_s'] * 1e3:.0f} ms | "
                    f"{step['data_median_s'] * 1e3:.0f} ms | {step['data_share']:.0%} | {uncached * 1e3:.0f} ms | "
                    f"{(step['data_median_s'] + uncached) / (step['step_median_s'] + uncached):.0%} |")
    if results["renderer_samples_per_second"]:
        rows += ["", "| renderer (benchmarks/renderer.py, 1 thread, 64 x 64) | samples/s |", "|---|---:|"]
        rows += [f"| {name} | {rate:.1f} |" for name, rate in results["renderer_samples_per_second"].items()]
    return "\n".join(rows)


def report(results: dict, table: str) -> str:
    return f"""## Data loading: share of a training step

Machine: {results['machine']}, 1 thread, PyTorch {results['torch']}; load average {results['load_average_before']:.1f}
before the run: absolute times rise with it when the machine is shared with training runs, the shares much less.
For each world recipe: the one-time cost of its `worlds.LatentCache` (rendering with `minigen.data.scenes`, then
encoding with the frozen worlds VAE, fp32), measured on {EXAMPLES} examples and extrapolated to the recipe's
`TRAIN_EXAMPLES`; then `Trainer.train_step` with the recipe's TrainConfig (batch size, precision: bf16 autocast for
tiny_i2v and tiny_sv3d, fp32 for tiny_sv4d2; random weights) over that {EXAMPLES}-example cache, median of {STEPS}
steps after {WARMUP}. Data work is the time in cache reads, `make_batch` and `condition` (the conditioner's frozen
CLIP and VAE encoders included): everything before the network. The no-cache column is what rendering and encoding
the batch would add to each step (per-example cache cost x batch size; the encode column includes loading the VAE
once). tiny_i2v and tiny_sv3d cache their targets' latents; their conditioner still encodes its noise-augmented
input frame every step. tiny_sv4d2's 19 conditioning frames an example (`cond_frames` 12, `cond_view` 4,
`cond_motion` 3) are noised by 1e-5 only, so the conditioner takes their cached latents too
(`worlds.known_latents`); encoding them at every step had made its data work 47% of a step (692 of 1487 ms, in bf16
on a busier machine). The renderer table is benchmarks/renderer.py's, at the datasets' default sizes (the recipes
render 8 views, and 5 times x 5 views).

{table}

Raw figures: `benchmarks/results/data_loading.json`. Regenerate: `python benchmarks/data_loading.py`
({results['wall_s']:.0f} s here)."""


def main() -> None:
    torch.set_num_threads(1)
    started = time.perf_counter()
    load_before = os.getloadavg()[0]
    recipes = {}
    for name, module in RECIPES.items():
        cache, cache_result = cache_cost(module)
        step_result = step_cost(name, cache)
        recipes[name] = {"cache": cache_result, "step": step_result,
                         "uncached_batch_s": cache_result["total_s_per_example"] * step_result["batch_size"]}
        print(f"{name}: done after {time.perf_counter() - started:.0f} s", flush=True)
    results = {"recipes": recipes, "renderer_samples_per_second": renderer_rates(), "machine": cpu_machine(),
               "threads": 1, "load_average_before": load_before, "python": platform.python_version(),
               "torch": torch.__version__, "examples": EXAMPLES, "warmup": WARMUP, "steps": STEPS}
    results["wall_s"] = time.perf_counter() - started
    table = tables(results)
    print(table)
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(results | {"markdown": table}, indent=2) + "\n")
    write_section("data_loading", report(results, table))


if __name__ == "__main__":
    main()
