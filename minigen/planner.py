"""The memory planner of notebook 10: peak GPU memory and time of one SVD sample, from the number of frames, the
resolution, `decoding_t`, the dtype and offloading, by a small model fitted to the measured rows of
docs/benchmarks.md (the H100 runs in benchmarks/results/).

The model has one term per thing that takes memory, each read off one measured row or a parameter count:

- weights: parameters x bytes per parameter (network and conditioner in the pipeline's dtype, the VAE in float32,
  as `minigen.pipelines` runs them);
- the UNet's activations during a guided step (2 x frames latents), proportional to frames x pixels: the svd
  network row (peak minus weights);
- the decoder's activations, proportional to decoding_t x pixels, and a fixed overhead: the two svd pipeline rows
  without offload (decoding_t 14 and 2), which differ only there.

Without offload every module stays on the GPU, so the peak is all weights plus the larger activation; with
`offload="model"` the modules take turns, so it is the larger of (UNet weights + its activations) and (VAE weights +
decoder activations). The time is `steps` guided UNet steps (the network row's time, proportional to frames x
pixels) plus decoding and offload transfers (the pipeline rows again). `python -m minigen.planner` prints the fit
against every svd row. Away from the measured settings it extrapolates: activations linear in frames x pixels
(attention is memory-efficient), time linear too (it ignores attention's quadratic cost at higher resolutions),
float32 activations twice float16's.
"""

import json
from dataclasses import dataclass
from pathlib import Path

RESULTS = Path(__file__).resolve().parents[1] / "benchmarks" / "results"  # the repository's measured rows
GIB = 2**30
BYTES = {"float16": 2, "bfloat16": 2, "float32": 4}  # per parameter or activation value
# svd's parameters per part (`minigen.presets.parameter_count` of `build_on_meta(get_preset("svd"))`)
SVD_PARAMETERS = {"network": 1_524_623_082, "conditioner": 767_453_928, "first_stage_model": 97_742_775}
MEASURED = dict(frames=14, height=576, width=1024, steps=25)  # the settings of every svd row
GPUS = {"24 GiB": 24, "40 GiB": 40, "80 GiB": 80}  # common GPU memory sizes, drawn in the widget


@dataclass(frozen=True)
class Plan:
    """What the planner predicts for one SVD sample: peak GPU memory (GiB) and its parts, and seconds."""

    peak_gib: float
    weights_gib: float  # resident at the peak
    activations_gib: float  # the rest of the peak: the UNet's or the decoder's activations, and the overhead
    phase: str  # "sampling" or "decoding": when the peak happens
    seconds: float


@dataclass(frozen=True)
class SVDPlanner:
    """Coefficients fitted by `fit`; `plan(...)` predicts. Per-pixel figures count the frames' output pixels."""

    parameters: dict  # part -> parameter count
    unet_gib_per_pixel: float  # guided step, 2-byte activations, per frame-pixel
    decoder_gib_per_pixel: float  # float32 VAE, per decoded frame-pixel
    overhead_gib: float  # latents, conditioning, workspace: what the rows hold besides the above
    unet_seconds_per_pixel: float  # one guided step, float16, per frame-pixel
    decoder_seconds_per_pixel: float  # per decoded frame-pixel, float32, whatever decoding_t
    offload_seconds: float  # moving the modules to and from the GPU, per sample
    device: str = ""

    def weights_gib(self, part: str, dtype: str) -> float:
        """GiB of one part's weights (a name of SVD_PARAMETERS) in `dtype`; the VAE's stay float32."""
        bytes_per_parameter = 4 if part == "first_stage_model" else BYTES[dtype]
        return self.parameters[part] * bytes_per_parameter / GIB

    def plan(self, frames: int = 14, height: int = 576, width: int = 1024, decoding_t: int = 14,
             dtype: str = "float16", offload: bool = False, steps: int = 25) -> Plan:
        """Peak memory and time of one sample of `frames` frames at `height` x `width`."""
        if dtype not in BYTES:
            raise ValueError(f"dtype must be one of {list(BYTES)}, got {dtype!r}.")
        if frames < 1 or steps < 1 or decoding_t < 1 or height % 64 or width % 64 or height < 64 or width < 64:
            raise ValueError(f"Need frames, steps, decoding_t >= 1 and a size in multiples of 64 (as SVD takes it); "
                             f"got frames={frames}, steps={steps}, decoding_t={decoding_t}, {height}x{width}.")
        pixels = height * width
        chunk = min(decoding_t, frames)
        unet = self.unet_gib_per_pixel * frames * pixels * BYTES[dtype] / 2
        decoder = self.decoder_gib_per_pixel * chunk * pixels
        network, conditioner, vae = (self.weights_gib(part, dtype)
                                     for part in ("network", "conditioner", "first_stage_model"))
        if offload:  # one module on the GPU at a time
            phases = {"sampling": (network, unet), "decoding": (vae, decoder)}
        else:
            resident = network + conditioner + vae
            phases = {"sampling": (resident, unet), "decoding": (resident, decoder)}
        phase = max(phases, key=lambda name: sum(phases[name]))
        weights, activations = phases[phase]
        slowdown = BYTES[dtype] / 2  # float32 steps assumed twice as slow as float16 ones
        seconds = (steps * self.unet_seconds_per_pixel * frames * pixels * slowdown
                   + self.decoder_seconds_per_pixel * frames * pixels + (self.offload_seconds if offload else 0.0))
        return Plan(weights + activations + self.overhead_gib, weights, activations + self.overhead_gib, phase,
                    seconds)

    def largest_frames(self, budget_gib: float, **settings) -> int:
        """The most frames whose peak stays within `budget_gib` with the other `settings` (0 if none fits)."""
        frames = 0
        while frames < 1000 and self.plan(frames + 1, **settings).peak_gib <= budget_gib:
            frames += 1
        return frames


def read_results(folder: Path = RESULTS) -> tuple[dict, dict]:
    """The two H100 result files: the full-size networks (`gpu_full_scale_h100.json`) and the pipelines
    (`full_scale_h100.json`)."""
    networks = json.loads((folder / "gpu_full_scale_h100.json").read_text())
    pipelines = json.loads((folder / "full_scale_h100.json").read_text())
    return networks, pipelines


def svd_rows(pipelines: dict) -> dict[str, dict]:
    """The svd pipeline rows by their settings: "defaults", "decoding_t 2", "decoding_t 2 + offload"."""
    rows = {}
    for row in pipelines["pipelines"]:
        label = row["label"]
        if label.startswith("svd, defaults"):
            rows["defaults"] = {**row, "decoding_t": 14, "offload": False}
        elif label == "svd, decoding_t 2":
            rows["decoding_t 2"] = {**row, "decoding_t": 2, "offload": False}
        elif label.startswith("svd, decoding_t 2 + offload"):
            rows["decoding_t 2 + offload"] = {**row, "decoding_t": 2, "offload": True}
    if len(rows) != 3:
        raise ValueError(f"Expected the three svd rows of benchmarks/full_scale.py, found {sorted(rows)}.")
    return rows


def fit(folder: Path = RESULTS, parameters: dict | None = None) -> SVDPlanner:
    """Read each coefficient off the measured rows (see the module's docstring for which row gives which)."""
    networks, pipelines = read_results(folder)
    parameters = parameters or SVD_PARAMETERS
    network_row = next(row for row in networks["networks"] if row["preset"] == "svd" and row["dtype"] == "float16")
    pixels = MEASURED["height"] * MEASURED["width"]
    unet_gib_per_pixel = (network_row["peak_gib"] - network_row["weights_gib"]) / (MEASURED["frames"] * pixels)
    rows = svd_rows(pipelines)
    full, chunked, offloaded = rows["defaults"], rows["decoding_t 2"], rows["decoding_t 2 + offload"]
    decoder_gib_per_pixel = (full["peak_gib"] - chunked["peak_gib"]) / ((14 - 2) * pixels)
    weights = sum(parameters[part] * (4 if part == "first_stage_model" else 2) for part in parameters) / GIB
    overhead = chunked["peak_gib"] - weights - decoder_gib_per_pixel * 2 * pixels
    unet_seconds_per_pixel = network_row["seconds"] / (MEASURED["frames"] * pixels)
    sampling_seconds = MEASURED["steps"] * network_row["seconds"]
    # the defaults row also pays the process's CUDA warm-up (docs/benchmarks.md): decoding time from decoding_t 2
    decoder_seconds_per_pixel = (chunked["seconds"] - sampling_seconds) / (MEASURED["frames"] * pixels)
    return SVDPlanner(parameters, unet_gib_per_pixel, decoder_gib_per_pixel, overhead, unet_seconds_per_pixel,
                      decoder_seconds_per_pixel, offloaded["seconds"] - chunked["seconds"], pipelines["device"])


def check_against_rows(planner: SVDPlanner, folder: Path = RESULTS) -> list[dict]:
    """Every svd pipeline row beside the planner's prediction for its settings, then sv3d_p's defaults row, which
    the fit never read: the same UNet (its vector input a little wider) at 21 frames of 576 x 576 in 50 steps,
    decoded 14 frames at a time by an image decoder instead of svd's temporal one."""
    _, pipelines = read_results(folder)
    table = []
    for name, row in svd_rows(pipelines).items():
        plan = planner.plan(decoding_t=row["decoding_t"], offload=row["offload"])
        table.append({"row": f"svd, {name}", "measured_gib": row["peak_gib"], "predicted_gib": plan.peak_gib,
                      "measured_seconds": row["seconds"], "predicted_seconds": plan.seconds})
    sv3d = next(row for row in pipelines["pipelines"] if row["label"].startswith("sv3d_p, defaults"))
    plan = planner.plan(frames=21, height=576, width=576, decoding_t=14, steps=50)
    table.append({"row": "sv3d_p, defaults (not fitted)", "measured_gib": sv3d["peak_gib"],
                  "predicted_gib": plan.peak_gib, "measured_seconds": sv3d["seconds"],
                  "predicted_seconds": plan.seconds})
    return table


# ------------------------------------------------------------------------------------------------- widget


RESOLUTIONS = {"576 x 1024 (SVD)": (576, 1024), "576 x 576 (SV3D)": (576, 576), "320 x 576": (320, 576),
               "768 x 1344": (768, 1344)}


def planner_widget(planner: SVDPlanner, dpi: int = 72):
    """Sliders for frames, resolution, decoding_t, dtype, offload and steps; a bar of the predicted peak (weights
    and activations) against common GPU sizes, and the predicted time. Every change redraws at once."""
    import ipywidgets as widgets
    from matplotlib.figure import Figure

    from .widgets import figure_png

    controls = {
        "frames": widgets.IntSlider(14, min=1, max=50, description="frames", continuous_update=False),
        "resolution": widgets.Dropdown(options=list(RESOLUTIONS), description="resolution"),
        "decoding_t": widgets.IntSlider(14, min=1, max=50, description="decoding_t", continuous_update=False),
        "dtype": widgets.Dropdown(options=list(BYTES), description="dtype"),
        "offload": widgets.Checkbox(False, description="offload='model'"),
        "steps": widgets.IntSlider(25, min=1, max=50, description="steps", continuous_update=False),
    }
    image, text = widgets.Image(format="png"), widgets.HTML()

    def update(change=None):
        height, width = RESOLUTIONS[controls["resolution"].value]
        settings = {name: control.value for name, control in controls.items() if name != "resolution"}
        plan = planner.plan(height=height, width=width, **settings)
        figure = Figure(figsize=(7, 1.8), dpi=dpi, layout="constrained")
        ax = figure.subplots()
        ax.barh([0], [plan.weights_gib], height=0.5, color="C0", label="weights")
        ax.barh([0], [plan.activations_gib], height=0.5, left=[plan.weights_gib], color="C1",
                label="activations + overhead")
        for label, size in GPUS.items():
            ax.axvline(size, color="0.5", ls=":")
            ax.text(size, 0.42, f"{label} GPU", ha="center", va="bottom", fontsize=8, backgroundcolor="white")
        ax.set(xlim=(0, max(90, plan.peak_gib * 1.1)), ylim=(-0.4, 0.65), yticks=[], xlabel="GiB",
               title=f"predicted peak {plan.peak_gib:.1f} GiB (during {plan.phase})")
        ax.legend(loc="lower right", fontsize=8)
        image.value = figure_png(figure)
        text.value = (f"<b>{plan.peak_gib:.1f} GiB</b> peak, about <b>{plan.seconds:.0f} s</b> per sample on the "
                      f"{planner.device} (fitted to its rows; extrapolated away from 14 frames at 576 x 1024)")

    for control in controls.values():
        control.observe(update, names="value")
    update()
    box = widgets.VBox([widgets.HBox([controls["frames"], controls["decoding_t"], controls["steps"]]),
                        widgets.HBox([controls["resolution"], controls["dtype"], controls["offload"]]), image, text])
    box.controls, box.update = controls, update
    return box


if __name__ == "__main__":
    fitted = fit()
    print(fitted)
    for entry in check_against_rows(fitted):
        print(entry)
