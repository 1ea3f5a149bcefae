"""Where a network's compute and memory go: FLOPs counted on the meta device and grouped by kind of layer, and the
peak memory of one piece of work, each measured in a fresh process.

Taught in notebook 10. The FLOP counts come from `torch.utils.flop_counter.FlopCounterMode` over a pass on the meta
device (shapes only: the official networks are counted without memory or weights). The memory points are measured
as benchmarks/ measure them: a process builds the network and its batch, resets the kernel's record of its peak
resident memory, runs the work once, and reports the new peak minus what it held before.

    python -m minigen.profiling < points.json       # what `measure_memory` runs: JSON points in, JSON rows out
"""

import inspect
import json
import os
import resource
import subprocess
import sys
import time
from collections.abc import Callable

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

MIB = 2**20

# ------------------------------------------------------------------------------------------------- FLOPs

TEMPORAL_PARTS = ("time_stack", "time_mixer", "time_pos_embed")  # the layers SVD added to SD 2.1's UNet


def layer_kind(chain: list[nn.Module], names: list[str]) -> str:
    """The kind of layer a piece of work belongs to, from the modules that enclose it (outermost first).

    Temporal layers first (they sit inside the spatial blocks), then attention blocks, then ResBlocks.
    """
    if any(name in TEMPORAL_PARTS for name in names):
        return "temporal layers"
    kinds = [type(module).__name__ for module in chain]
    if any("Transformer" in kind for kind in kinds):
        return "spatial attention blocks"
    if any("ResBlock" in kind or "ResnetBlock" in kind for kind in kinds):
        return "spatial ResBlocks"
    return "other (embeddings, in/out, resampling)"


def flops_by_kind(module: nn.Module, work: Callable[[], object],
                  kind: Callable[[list[nn.Module], list[str]], str] = layer_kind) -> dict[str, int]:
    """FLOPs of `work()` (which calls `module`), split by `kind(enclosing modules, their attribute names)`.

    FlopCounterMode counts every matrix product and convolution and credits it to each module it ran inside;
    here each module keeps only what ran in itself and not in a child, so every FLOP is counted once.
    Run it on the meta device to count a network that does not fit in memory.
    """
    with FlopCounterMode(display=False, depth=None) as counter:
        work()
    root = type(module).__name__  # FlopCounterMode names modules "VideoUNet.input_blocks.1.0. ..."
    totals = {path: sum(counts.values()) for path, counts in counter.get_flop_counts().items()
              if path == root or path.startswith(root + ".")}
    # a module's own FLOPs: its total less its children's; a container that is never called (a ModuleList) has
    # no entry, so a child is any entry whose nearest recorded ancestor is the module
    own = dict(totals)
    for path, total in totals.items():
        parts = path.split(".")
        parent = next((".".join(parts[:end]) for end in range(len(parts) - 1, 0, -1)
                       if ".".join(parts[:end]) in totals), None)
        if parent is not None:
            own[parent] -= total
    modules = dict(module.named_modules())
    grouped: dict[str, int] = {}
    for path, flops in own.items():
        if flops:
            names = path.split(".")[1:]
            chain = [modules[".".join(names[:depth])] for depth in range(len(names) + 1)]
            group = kind(chain, names)
            grouped[group] = grouped.get(group, 0) + flops
    outside = counter.get_total_flops() - sum(grouped.values())
    if outside:
        grouped["outside the module"] = outside
    return grouped


# ------------------------------------------------------------------------------------------------ memory


def resident_mib() -> float:
    """This process's resident memory now (Linux: VmRSS)."""
    return _status_mib("VmRSS")


def peak_resident_mib() -> float:
    """This process's highest resident memory since it started or since `reset_peak` (Linux: VmHWM)."""
    try:
        return _status_mib("VmHWM")
    except OSError:  # no /proc (macOS): getrusage's maximum, which cannot be reset
        scale = 1 if sys.platform == "darwin" else 1024  # bytes on macOS, KiB on Linux
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / MIB


def reset_peak() -> bool:
    """Forget the peak so far (Linux: write 5 to /proc/self/clear_refs); False where that is not possible."""
    try:
        with open("/proc/self/clear_refs", "w") as clear_refs:
            clear_refs.write("5")
        return True
    except OSError:
        return False


def _status_mib(field: str) -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024  # kB
    raise OSError(f"{field} not in /proc/self/status")


def video_unet_step(videos: int, frames: int = 8, latent_size: int = 8, checkpointing: bool = False,
                    dtype: str = "float32") -> Callable[[], None]:
    """One forward + backward of tiny_svd's VideoUNet (tiny_i2v's network) on `videos` x `frames` latents.

    `dtype` "bfloat16" runs it under autocast, as `minigen.train --precision bf16` does (weights stay float32).
    """
    from .nn.unet import set_gradient_checkpointing
    from .presets.networks import tiny_svd

    config = tiny_svd()
    torch.manual_seed(0)
    network = config.build().train()
    set_gradient_checkpointing(network, checkpointing)
    rows = videos * frames
    generator = torch.Generator().manual_seed(0)
    inputs = dict(x=torch.randn(rows, config.in_channels, latent_size, latent_size, generator=generator),
                  timesteps=torch.rand(rows, generator=generator),
                  context=torch.randn(rows, 1, config.context_dim, generator=generator),
                  y=torch.randn(rows, config.adm_in_channels, generator=generator),
                  num_video_frames=frames, image_only_indicator=torch.zeros(videos, frames))
    autocast = torch.autocast("cpu", dtype=getattr(torch, dtype), enabled=dtype != "float32")

    def step():
        with autocast:
            loss = network(**inputs).float().square().mean()
        loss.backward()

    return step


def video_decode(frames: int, decoding_t: int, latent_size: int = 8) -> Callable[[], None]:
    """Decoding `frames` latents with tiny_svd's temporal VAE decoder, `decoding_t` frames at a time."""
    from .presets.first_stage import tiny_svd_vae

    torch.manual_seed(0)
    first_stage = tiny_svd_vae().build().eval()
    z = torch.randn(frames, 4, latent_size, latent_size, generator=torch.Generator().manual_seed(0))

    def decode():
        with torch.no_grad():
            first_stage.decode(z, chunk_size=decoding_t, num_frames=frames)

    return decode


WORK = {"train": video_unet_step, "decode": video_decode}  # what a memory point can run
FORK = sys.platform.startswith("linux")  # fork after importing PyTorch (macOS frameworks do not allow it safely)


def memory_point(point: dict) -> dict:
    """In this process: build `point`'s work, then measure its peak memory above what the process held before.

    Returns the point with every argument of its work (defaults filled in), `peak_mib`, `seconds` and `exact`
    (False where the peak could not be reset: then it is the rise of the process's lifetime peak, a lower bound).
    """
    build = WORK[point["work"]]
    arguments = {name: parameter.default for name, parameter in inspect.signature(build).parameters.items()
                 if parameter.default is not inspect.Parameter.empty}
    point = {"work": point["work"], **arguments, **{key: value for key, value in point.items() if key != "work"}}
    work = build(**{key: value for key, value in point.items() if key != "work"})
    exact = reset_peak()
    before = resident_mib() if exact else peak_resident_mib()
    started = time.perf_counter()
    work()
    seconds = time.perf_counter() - started
    extra = max(peak_resident_mib() - before, 0.0)
    return {**point, "peak_mib": round(extra, 1), "seconds": round(seconds, 3), "exact": exact}


def warm_up() -> None:
    """Run, once and tiny, what the points will run: PyTorch sets up autograd, checkpointing and autocast lazily,
    on first use (checkpointing imports tens of MiB of modules), and that one-time cost is not the work's."""
    layer = nn.Conv2d(1, 1, 3)
    x = torch.ones(1, 1, 4, 4, requires_grad=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = torch.utils.checkpoint.checkpoint(layer, x, use_reentrant=False)
    (y.float().sum() + layer(x).sum()).backward()


def _serve(points: list[dict]) -> list[dict]:
    """Measure each point in a fresh process, a fork of this one: imports and warm-up are paid once."""
    warm_up()
    rows = []
    for point in points:
        read, write = os.pipe()
        child = os.fork()
        if child == 0:  # the fresh process: measure, report, and leave at once
            os.close(read)
            try:
                os.write(write, json.dumps(memory_point(point)).encode())
            finally:
                os._exit(0)
        os.close(write)
        with os.fdopen(read) as pipe:
            answer = pipe.read()
        os.waitpid(child, 0)
        if not answer:
            raise RuntimeError(f"The process measuring {point} failed.")
        rows.append(json.loads(answer))
    return rows


def measure_memory(points: list[dict], timeout: float = 600) -> list[dict]:
    """Peak extra memory of each point (`{"work": "train" | "decode", ...its arguments}`), each measured in a
    fresh process with one thread; returns the points with their arguments, `peak_mib` and `seconds` (the time of
    the work, noisy on a busy machine) added.

    On Linux one new interpreter imports PyTorch once and forks a process per point; elsewhere every point gets its
    own interpreter. malloc is told to hand every large block back to the system when it is freed, so that resident
    memory follows the memory in use.
    """
    environment = {**os.environ, "OMP_NUM_THREADS": "1", "MALLOC_MMAP_THRESHOLD_": "65536",
                   "MALLOC_TRIM_THRESHOLD_": "0"}
    batches = [points] if FORK else [[point] for point in points]
    rows = []
    for batch in batches:
        done = subprocess.run([sys.executable, "-m", "minigen.profiling"], input=json.dumps(batch),
                              capture_output=True, text=True, env=environment, timeout=timeout)
        if done.returncode != 0:
            raise RuntimeError(f"Measuring memory failed:\n{done.stderr[-3000:]}")
        rows.extend(json.loads(done.stdout))
    return rows


if __name__ == "__main__":
    torch.set_num_threads(1)
    given = json.loads(sys.stdin.read())
    if FORK:
        print(json.dumps(_serve(given)))
    else:  # a single point, in this fresh interpreter
        warm_up()
        print(json.dumps([memory_point(point) for point in given]))
