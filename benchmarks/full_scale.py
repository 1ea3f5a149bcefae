"""Every official model at full size: seconds per sample at the official defaults and peak GPU memory, with
and without the memory options, and the time to load an official-size checkpoint.

On a CUDA machine: `python benchmarks/full_scale.py run results.json` (random weights, fp16), then anywhere
`python benchmarks/full_scale.py report results.json` writes the `full_scale` section of docs/benchmarks.md.
On any CPU: `python benchmarks/full_scale.py --dry-run` builds every official model on the meta device (no
memory) and runs its network and first stage on meta tensors of the official shapes, to check them.
"""

import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gpu_full_scale import ALL_NETWORK_CASES, GIB, network_inputs  # noqa: E402

from minigen.pipelines import DiffusionEngine  # noqa: E402
from minigen.presets import official_preset_names  # noqa: E402

GPU_RUNS = [  # (label, pipeline module and class, preset, call options)
    ("svd, defaults (14 frames, 25 steps, decoding_t 14)", "svd", "SVDPipeline", "svd", {}),
    ("svd, decoding_t 2", "svd", "SVDPipeline", "svd", {"decoding_t": 2}),
    ("svd, decoding_t 2 + offload='model'", "svd", "SVDPipeline", "svd", {"decoding_t": 2, "offload": "model"}),
    ("sv3d_p, defaults (21 views, 50 steps)", "sv3d", "SV3DPipeline", "sv3d_p", {}),
    ("sd_xl_base, 1024x1024, 50 steps, cfg", "sdxl", "TextToImagePipeline", "sd_xl_base", {}),
    ("sd_xl_base, offload='model'", "sdxl", "TextToImagePipeline", "sd_xl_base", {"offload": "model"}),
    ("sv4d2, one 12x4 window, 5 steps", "sv4d", "SV4D2Pipeline", "sv4d2", {"num_steps": 5}),
]


def dry_run() -> None:
    """Shapes only: every official network and first stage on meta tensors."""
    for name in official_preset_names():
        engine = DiffusionEngine.from_preset(name, meta=True)
        inputs = network_inputs(name, engine.network, torch.float32, copies=2, device="meta")
        out = engine.network(**inputs)
        assert out.shape == (inputs["x"].shape[0], 4, *inputs["x"].shape[2:]), (name, out.shape)
        first_stage = engine.first_stage_model
        frames = ALL_NETWORK_CASES[name]["frames"]
        latents = torch.empty(frames, 4, *inputs["x"].shape[2:], device="meta")
        images = first_stage.decode(latents, num_frames=frames)
        parameters = sum(p.numel() for p in engine.parameters())
        print(f"{name:14s} {parameters / 1e9:5.2f} B parameters; network {tuple(inputs['x'].shape)} -> "
              f"{tuple(out.shape)}; decode {tuple(latents.shape)} -> {tuple(images.shape)}")


def inputs_for(preset: str):
    """A random input of the official size: an image for svd / sv3d, a 12-frame clip for sv4d2, a prompt for SDXL."""
    generator = np.random.default_rng(0)
    if preset.startswith("svd"):
        return {"image": generator.integers(0, 256, (576, 1024, 3), dtype=np.uint8)}
    if preset.startswith("sv3d"):
        return {"image": generator.integers(0, 256, (576, 576, 3), dtype=np.uint8)}
    if preset.startswith("sv4d"):
        return {"video": generator.integers(0, 256, (12, 576, 576, 3), dtype=np.uint8)}
    return {"prompt": "a lighthouse at dusk"}


def measure_pipeline(module: str, class_name: str, preset: str, options: dict) -> dict:
    import importlib

    pipeline_class = getattr(importlib.import_module(f"minigen.pipelines.{module}"), class_name)
    options = dict(options)
    offload = options.pop("offload", None)
    pipeline = pipeline_class.from_preset(preset, device="cuda", dtype=torch.float16, offload=offload)
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    pipeline(**inputs_for(preset), **options, progress=False)
    torch.cuda.synchronize()
    return {"seconds": time.perf_counter() - start, "peak_gib": torch.cuda.max_memory_allocated() / GIB}


def measure_loading(preset: str = "svd") -> dict:
    """Write the preset's whole engine (fp16) once, then time a strict, memory-mapped load onto the GPU."""
    with torch.device("cuda"):
        engine = DiffusionEngine.from_preset(preset, device="cuda", dtype=torch.float16)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"{preset}.safetensors"
        save_file({k: v.contiguous() for k, v in engine.state_dict().items()}, path)
        del engine
        torch.cuda.empty_cache()
        start = time.perf_counter()
        DiffusionEngine.from_checkpoint(path, preset=preset, device="cuda", dtype=torch.float16)
        torch.cuda.synchronize()
        return {"preset": preset, "seconds": time.perf_counter() - start, "gib_on_disk": path.stat().st_size / GIB}


def run(path: str) -> None:
    results = {"device": torch.cuda.get_device_name(), "torch": torch.__version__, "pipelines": []}
    for label, module, class_name, preset, options in GPU_RUNS:
        row = {"label": label, **measure_pipeline(module, class_name, preset, options)}
        results["pipelines"].append(row)
        print(row, flush=True)
        torch.cuda.empty_cache()
    results["loading"] = measure_loading()
    print(results["loading"], flush=True)
    Path(path).write_text(json.dumps(results, indent=1))


def report(path: str) -> None:
    from _report import write_section

    results = json.loads(Path(path).read_text())
    lines = ["## Full-scale pipelines and memory options (random weights, fp16)", "",
             f"Device: {results['device']}, torch {results['torch']}. Written by `python benchmarks/full_scale.py "
             "run results.json` on the GPU, then `... report results.json`. One sample per row at the official "
             "defaults unless the row says otherwise; the VAE runs in float32 as in the reference. Random weights "
             "give meaningless pictures but the real amount of work. The first row also pays the process's CUDA "
             "warm-up, so compare memory across rows and time within a model.", "",
             "| run | seconds per sample | peak GPU memory (GiB) |", "|---|---|---|"]
    lines += [f"| {row['label']} | {row['seconds']:.1f} | {row['peak_gib']:.1f} |" for row in results["pipelines"]]
    loading = results["loading"]
    lines += ["", f"Loading a {loading['gib_on_disk']:.1f} GiB {loading['preset']} checkpoint (fp16, whole engine) "
              f"strictly onto the GPU: {loading['seconds']:.1f} s.", "",
              "What each option saves: `decoding_t` bounds the VAE decoder's activations (it decodes that many frames "
              "at a time); `offload='model'` keeps only the module in use on the GPU (the conditioner, UNet and VAE "
              "take turns), trading transfer time for memory; `dtype=float16` halves the weights of the network and "
              "encoders."]
    write_section("full_scale", "\n".join(lines))


if __name__ == "__main__":
    if sys.argv[1:] == ["--dry-run"]:
        dry_run()
    else:
        {"run": run, "report": report}[sys.argv[1]](sys.argv[2])
