"""One training step of the tiny_svd VideoUNet against diffusers' UNetSpatioTemporalConditionModel of the same sizes.

A step is forward + MSE loss + backward + AdamW step, on a batch of 2 videos x 8 frames of 16x16 latents (128x128
pixels), with and without gradient checkpointing (minigen: the config's `use_checkpoint`, which wraps every ResBlock
and transformer block in torch.utils.checkpoint; diffusers: `enable_gradient_checkpointing()`). Times are medians
of several steps after two warm-up steps (the first allocates AdamW's state), the four configurations stepped in
turn so that a busy spell of a shared machine hits all of them. Each peak memory is measured in a fresh Python
process, as in benchmarks/attention.py: the highest resident memory during two steps (`VmHWM`, reset once the
network, optimizer and batch exist) minus the resident memory at that moment, so it counts activations, gradients
and AdamW's state. Writes the `training_step` section of docs/benchmarks.md and benchmarks/results/training_step.json.

    python benchmarks/training_step.py                              # everything (6 minutes on 2 busy cores)
    python benchmarks/training_step.py --threads 1                  # on a busy machine (see below)
    python benchmarks/training_step.py --report                     # the section again from the JSON, no measuring
    python benchmarks/training_step.py --point minigen checkpoint   # one memory point; prints JSON

On a machine whose cores are busy with other work, 2 threads can be several times slower than 1: each operation
waits for its slower thread. `--threads 1` then gives steadier times.
"""

import argparse
import json
import platform
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import write_section  # noqa: E402
from attention import diffusers_twin, interleaved_median_seconds, machine  # noqa: E402

from minigen import profiling  # noqa: E402
from minigen.presets import get_preset, parameter_count  # noqa: E402

THREADS = 2  # the default of --threads
BATCH = dict(videos=2, frames=8, latent_size=16)
REPEATS = 7  # timed steps of each configuration, after the warm-up
NETWORKS = ("minigen", "diffusers")
CHECKPOINTING = ("off", "checkpoint")
RESULTS = Path(__file__).resolve().parent / "results" / "training_step.json"


def batch(config) -> dict:
    """One batch in minigen's layout: frames of all videos stacked, `(b t) ...`; conditioning repeated per frame."""
    generator = torch.Generator().manual_seed(0)
    videos, frames, size = BATCH["videos"], BATCH["frames"], BATCH["latent_size"]
    return {
        "x": torch.randn(videos * frames, config.in_channels, size, size, generator=generator),  # (b t) c h w
        "sigma": torch.rand(videos, generator=generator).repeat_interleave(frames) + 0.5,  # one noise level a video
        "context": torch.randn(videos, 1, config.context_dim, generator=generator).repeat_interleave(frames, 0),
        "y": torch.randn(videos, config.adm_in_channels, generator=generator).repeat_interleave(frames, 0),
        "target": torch.randn(videos * frames, config.out_channels, size, size, generator=generator),
    }


def training_step(network: str, checkpointing: str):
    """A function that runs one training step of `network`, built with gradient checkpointing on or off."""
    config = get_preset("tiny_svd").network
    inputs = batch(config)
    videos, frames = BATCH["videos"], BATCH["frames"]
    torch.manual_seed(0)
    if network == "minigen":
        model = replace(config, use_checkpoint=checkpointing == "checkpoint").build().train()

        def loss():
            output = model(inputs["x"], inputs["sigma"], context=inputs["context"], y=inputs["y"],
                           num_video_frames=frames, image_only_indicator=torch.zeros(videos, frames))
            return F.mse_loss(output, inputs["target"])
    else:
        model = diffusers_twin(config).train()
        if checkpointing == "checkpoint":
            model.enable_gradient_checkpointing()
        sample = inputs["x"].unflatten(0, (videos, frames))  # b t c h w, as diffusers takes it
        target = inputs["target"].unflatten(0, (videos, frames))
        added_time_ids = torch.tensor([[6.0, 127.0, 0.02]]).repeat(videos, 1)  # fps_id, motion_bucket_id, cond_aug

        def loss():
            output = model(sample, inputs["sigma"][::frames], encoder_hidden_states=inputs["context"][::frames],
                           added_time_ids=added_time_ids).sample
            return F.mse_loss(output, target)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)

    def step():
        optimizer.zero_grad(set_to_none=True)
        loss().backward()
        optimizer.step()

    step.parameters = parameter_count(model)
    return step


def memory_point(network: str, checkpointing: str) -> dict:
    """Peak extra memory of two training steps; runs inside a fresh process."""
    step = training_step(network, checkpointing)
    profiling.reset_peak()  # construction's own peak must not count
    before = profiling.resident_mib()
    for _ in range(2):  # the second step runs with AdamW's state and the gradients already held
        step()
    return {"peak_mb": max(profiling.peak_resident_mib() - before, 0.0)}


def memory_in_subprocess(network: str, checkpointing: str) -> float:
    command = [sys.executable, __file__, "--point", network, checkpointing, "--threads", str(torch.get_num_threads())]
    return json.loads(subprocess.run(command, check=True, capture_output=True, text=True).stdout)["peak_mb"]


def measure() -> dict:
    steps = {(network, checkpointing): training_step(network, checkpointing)
             for network in NETWORKS for checkpointing in CHECKPOINTING}
    if len({step.parameters for step in steps.values()}) != 1:
        raise RuntimeError("The two networks have different sizes: update attention.diffusers_twin to tiny_svd.")
    for step in steps.values():
        step()  # the first step also allocates AdamW's state; interleaved_median_seconds warms up once more
    seconds = interleaved_median_seconds({f"{network} {checkpointing}": step
                                          for (network, checkpointing), step in steps.items()}, repeats=REPEATS)
    rows = []
    for (network, checkpointing), step in steps.items():
        rows.append({"network": network, "checkpointing": checkpointing == "checkpoint",
                     "parameters": step.parameters, "seconds": seconds[f"{network} {checkpointing}"],
                     "peak_mb": memory_in_subprocess(network, checkpointing)})
        print(rows[-1], flush=True)
    import diffusers

    return {"machine": machine(), "threads": torch.get_num_threads(), "torch": torch.__version__,
            "diffusers": diffusers.__version__, "batch": BATCH, "repeats": REPEATS, "rows": rows}


def markdown(results: dict) -> str:
    clip = (f"{BATCH['videos']} videos x {BATCH['frames']} frames of {BATCH['latent_size']}x{BATCH['latent_size']} "
            "latents")
    peer = {row["checkpointing"]: row for row in results["rows"] if row["network"] == "diffusers"}
    lines = [
        "## Training step: the video UNet vs diffusers",
        "",
        f"Machine: {results['machine']}, {platform.machine()}, {results['threads']} threads, PyTorch "
        f"{results['torch']}, float32. One step = forward + MSE loss + backward + AdamW step of the tiny_svd "
        f"`VideoUNet` ({results['rows'][0]['parameters']:,} parameters) and of diffusers {results['diffusers']} "
        "`UNetSpatioTemporalConditionModel` built with the same sizes (`diffusers_twin` of "
        f"benchmarks/attention.py), on {clip} with the same context, conditioning vector (diffusers: its 3 added "
        "time ids) and target. Gradient checkpointing: minigen's `use_checkpoint` (every ResBlock and "
        "transformer block), diffusers' `enable_gradient_checkpointing()`. Time: median of "
        f"{results['repeats']} steps after warm-up, the four configurations stepped in turn. **Noisy:** the "
        "machine was shared with other work, so each operation waited for the slower of its threads; times are "
        "several times an idle machine's (on this machine a 1-thread run of the same steps took 0.4-0.6 s) and "
        "the ratios moved by about 0.1 between runs. Peak memory: extra resident memory of a fresh process over "
        "two steps (activations, gradients, AdamW state); it does not depend on the load.",
        "",
        "| network | gradient checkpointing | step time (ms) | time / diffusers | peak memory (MB) | "
        "memory / diffusers |",
        "|---|---|---|---|---|---|",
    ]
    for row in results["rows"]:
        base = peer[row["checkpointing"]]
        name = "minigen `VideoUNet`" if row["network"] == "minigen" else "diffusers `UNetSpatioTemporalConditionModel`"
        lines.append(f"| {name} | {'on' if row['checkpointing'] else 'off'} | {1000 * row['seconds']:.0f} | "
                     f"{row['seconds'] / base['seconds']:.2f} | {row['peak_mb']:.0f} | "
                     f"{row['peak_mb'] / max(base['peak_mb'], 1e-9):.2f} |")
    lines += ["", f"Raw figures: `benchmarks/results/{RESULTS.name}`. "
                  "Regenerate: `python benchmarks/training_step.py` (6 minutes with 2 threads on this busy machine, "
                  "under one with `--threads 1`)."]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--point", nargs=2, metavar=("NETWORK", "CHECKPOINTING"), help="measure one memory point")
    parser.add_argument("--threads", type=int, default=THREADS, help=f"torch threads (default {THREADS})")
    parser.add_argument("--report", action="store_true", help=f"rewrite the section from {RESULTS.name} only")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.point:
        print(json.dumps(memory_point(*args.point)))
        return
    if args.report:
        results = json.loads(RESULTS.read_text())
    else:
        results = measure()
        RESULTS.write_text(json.dumps(results, indent=1) + "\n")
    table = markdown(results)
    print(table)
    write_section("training_step", table)


if __name__ == "__main__":
    main()
