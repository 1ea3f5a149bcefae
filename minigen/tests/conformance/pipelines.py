"""Handler for the end-to-end pipeline cases (pipe_*): a whole DiffusionEngine built from case.json, run as the
reference sampling script runs it, through the very code the minigen pipelines use.

The engine comes from the case's reference configs alone (network, denoiser, conditioner, first stage, sampler),
loads `weights.safetensors` strictly, and the stored draws replace the pipeline's own: SVD / SV3D's start noise
(`randn`) and conditioning-image noise (`cond_aug_noise`); for SV4D / SV4D 2.0 every `noise.NNN`, sorted into
the passes as the notes list them. The user's options come from `call.kwargs`. Each network family has its own
flow; a case whose network has none fails with a message saying so.
"""

import inspect
import re
from collections.abc import Callable
from dataclasses import replace

import pytest
import torch

from minigen import diffusion
from minigen.camera import Trajectory, orbit_azimuths_deg, sv4d2_camera_inputs, sv4d_camera_inputs
from minigen.pipelines.common import input_keys
from minigen.pipelines.engine import DiffusionEngine
from minigen.pipelines.sv3d import SV3DPipeline
from minigen.pipelines.sv4d import SV4D2Pipeline, SV4DPipeline, WindowNoise
from minigen.pipelines.svd import SVDPipeline
from minigen.pipelines.video_common import VideoDefaults
from minigen.presets.conditioners import ConditionerConfig
from minigen.presets.denoisers import DenoiserConfig
from minigen.presets.first_stage import FirstStageConfig
from minigen.presets.networks import VideoUNetConfig
from minigen.presets.sv4d import SpatialUNetConfig

from .cases import Case, handles
from .conditioning import flatten, register_tiny_archs

# network class name (network_config's target) -> the flow that runs its pipeline case
PIPELINE_FLOWS: dict[str, Callable[[Case], dict]] = {}


def pipeline_flow(network_name: str):
    """Register the decorated function as the flow of pipeline cases whose network is `network_name`."""

    def register(flow):
        PIPELINE_FLOWS[network_name] = flow
        return flow

    return register


@handles("DiffusionEngine")
def run_pipeline(case: Case) -> dict:
    network = case.kwargs["network_config"]["target"].rsplit(".", 1)[-1]
    if network not in PIPELINE_FLOWS:
        pytest.fail(f"{case.id}: pipeline cases are not implemented for this network ({network}); the conformance "
                    f"runner has flows for {sorted(PIPELINE_FLOWS)}. Register one with @pipeline_flow({network!r}).")
    return PIPELINE_FLOWS[network](case)


# ---------------------------------------------------------------- the engine and sampler from reference configs


def tuples(params: dict) -> dict:
    """JSON lists as the tuples the preset dataclasses hold."""
    return {key: tuple(value) if isinstance(value, list) else value for key, value in params.items()}


def denoiser_from_reference(config: dict):
    if not config["target"].endswith(".Denoiser"):
        raise ValueError(f"Only the continuous Denoiser of the video models is read here, got {config['target']!r}.")
    scaling = diffusion.by_name("scaling", config.get("params", {})["scaling_config"]["target"])
    return DenoiserConfig(scaling=scaling).build()


def engine_from_reference(case: Case, network_config=VideoUNetConfig) -> DiffusionEngine:
    """The case's engine (network: a VideoUNet, or the SV4D UNet) with the reference weights, loaded strictly."""
    kwargs = case.kwargs
    engine = DiffusionEngine(
        network=network_config(**tuples(kwargs["network_config"]["params"])).build(),
        denoiser=denoiser_from_reference(kwargs["denoiser_config"]),
        conditioner=ConditionerConfig.from_reference(kwargs["conditioner_config"]).build(),
        first_stage_model=FirstStageConfig.from_reference(kwargs["first_stage_config"],
                                                          scale_factor=kwargs["scale_factor"]).build(),
    )
    engine.load_state_dict(case.weights, strict=True)
    return engine.eval()


def from_reference(config: dict, kind: str):
    return diffusion.by_name(kind, config["target"])(**config.get("params", {}))


def sampler_from_reference(config: dict):
    """The sampler of sampler_config (verbose / device have no counterpart: no progress bar, inputs' device)."""
    params = {key: value for key, value in config["params"].items() if key not in ("verbose", "device")}
    discretization = from_reference(params.pop("discretization_config"), "discretization")
    guider = from_reference(params.pop("guider_config"), "guider")
    return diffusion.by_name("sampler", config["target"])(discretization, guider=guider, progress=False, **params)


# ---------------------------------------------------------------- flows


@pipeline_flow("VideoUNet")
def run_image_to_video(case: Case) -> dict:
    """SVD (the conditioner reads fps_id) or SV3D: the pipeline's `conditions` and `generate`, stored noise."""
    register_tiny_archs(case)
    engine = engine_from_reference(case)
    sampler = sampler_from_reference(case.kwargs["sampler_config"])
    options = case.call_kwargs()
    num_frames = options["num_frames"]
    guider = case.kwargs["sampler_config"]["params"]["guider_config"]
    defaults = VideoDefaults(num_frames=num_frames, num_steps=options["num_steps"],
                             guider=diffusion.by_name("guider", guider["target"]), cfg=guider["params"]["max_scale"],
                             min_cfg=guider["params"].get("min_scale", 1.0), cond_aug=options["cond_aug"],
                             image_size=None)
    pipeline_class = SVDPipeline if "fps_id" in input_keys(engine.conditioner) else SV3DPipeline
    pipe = pipeline_class(engine, defaults)
    image, cond_aug_noise, randn = case.call_args()
    # the user's options the case states (svd: fps_id, motion_bucket_id; sv3d_p: elevations_deg, azimuths_deg)
    chosen = {name: options[name] for name in inspect.signature(pipe.conditions).parameters
              if name in options and name != "num_frames"}
    values = pipe.conditions(num_frames, **chosen)
    sample = pipe.generate(image, values, num_frames, sampler, decoding_t=options["decoding_t"],
                           cond_aug_noise=cond_aug_noise, randn=randn)
    check_batch(case, values)
    return {"latents": sample.latents, "decoded": sample.decoded, "frames": sample.frames,
            **flatten((sample.c, sample.uc), prefixes=("c", "uc"))}


def check_batch(case: Case, values: dict) -> None:
    """The per-frame numbers the pipeline made of the options must be the ones the reference script put in its batch."""
    for key, stored in case.input_group("batch").items():
        if key in values:
            chosen = torch.as_tensor(values[key]).float().expand(stored.shape)
            torch.testing.assert_close(chosen, stored.float(), msg=f"{case.id}: batch.{key} differs from the script's")


# ---------------------------------------------------------------- SV4D and SV4D 2.0

# "noise.012: window 0 (anchor) init 6x4x4x4", "noise.027: window 1 (dense t0=0) backward c cond_frames eps 6x3x32x32"
NOISE_NOTE = re.compile(r"noise\.(\d+): window (\d+)(?: \(([^)]*)\))?(?: (forward|backward))?"
                        r" (?:(c|uc) (\w+) (sigma-draw|eps)|(init|latent_matrix))")


def recorded_noise(case: Case, frames_per_window: int) -> list[WindowNoise]:
    """The reference's draws (inputs noise.NNN), sorted into one WindowNoise per pass as the notes list them.

    The ZeroSampler's draws are skipped: their values are unused (sigma is 1e-5 whatever they hold). A dense
    SV4D window's latent_matrix is drawn for every frame and view; the window reads its own times, novel views.
    """
    windows: dict[int, WindowNoise] = {}
    notes = list(NOISE_NOTE.finditer(case.spec["notes"]))
    stored = sorted(name for name in case.inputs if name.startswith("noise."))
    assert [f"noise.{note.group(1)}" for note in notes] == stored, f"{case.id}: the notes do not list every draw"
    for note in notes:
        index, window, where, direction, branch, key, kind, start = note.groups()
        drawn = windows.setdefault(int(window), WindowNoise())
        tensor = case.inputs[f"noise.{index}"]
        if kind == "eps":
            field = "backward_augmentation" if direction == "backward" else "augmentation"
            if getattr(drawn, field) is None:
                setattr(drawn, field, ({}, {}))
            getattr(drawn, field)[branch == "uc"][key] = tensor
        elif start == "init":
            drawn.start = tensor
        elif start == "latent_matrix":
            t0 = int(re.fullmatch(r"dense t0=(\d+)", where).group(1))
            drawn.start = tensor[t0:t0 + frames_per_window, 1:].flatten(0, 1)  # (t v) 4 h w, times ascending
    return [windows[index] for index in range(len(windows))]


def check_multiview_sampler(case: Case, sampler) -> None:
    """The pipeline's own default sampler must be the one the helpers built (guider, scales, schedule)."""
    options = case.call_kwargs()
    guider = options["guider_config"]
    assert type(sampler.guider).__name__ == guider["target"].rsplit(".", 1)[-1], f"{case.id}: another guider"
    expected = diffusion.by_name("guider", guider["target"])(**guider["params"])
    torch.testing.assert_close(sampler.guider.frame_scales, expected.frame_scales,
                               msg=f"{case.id}: the guider's per-frame scales differ from the script's")
    assert list(sampler.guider.additional_cond_keys) == list(guider["params"]["additional_cond_keys"])
    discretization = sampler.discretization
    assert (discretization.sigma_min, discretization.sigma_max, discretization.rho) == (
        options["sigma_min"], options["sigma_max"], options["rho"]), f"{case.id}: another EDM schedule"
    assert type(sampler).__name__ == "EulerEDMSampler" and sampler.num_steps == options["num_steps"]


def multiview_outputs(sample) -> dict:
    outputs = {"images": sample.images}
    for index, window in enumerate(sample.windows):
        outputs[f"window.{index}.latents"] = window.latents
        outputs[f"window.{index}.samples"] = torch.clamp((window.images + 1.0) / 2.0, 0.0, 1.0)
    return outputs


@pipeline_flow("SpatialUNetModelWithTime")
def run_multiview_video(case: Case) -> dict:
    """SV4D (given SV3D's views) or SV4D 2.0 (call.kwargs.variant): the pipeline's `generate` with the variant's
    own defaults, every recorded draw replayed."""
    register_tiny_archs(case)
    engine = engine_from_reference(case, SpatialUNetConfig)
    options = case.call_kwargs()
    T, V = options["T"], options["V"]
    if "variant" in options:  # SV4D 2.0: sv4d2 or sv4d2_8views
        pipeline_class, preset = SV4D2Pipeline, options["variant"]
    else:
        pipeline_class, preset = SV4DPipeline, "sv4d"
    defaults = replace(pipeline_class.DEFAULTS[preset], num_steps=options["num_steps"], image_size=options["img_size"])
    pipe = (SV4DPipeline(engine, defaults, sv3d=None) if pipeline_class is SV4DPipeline
            else SV4D2Pipeline(engine, defaults))
    assert (pipe.frames_per_window, pipe.views) == (T, V), f"{case.id}: the engine is not {T} times x {V} views"
    sampler = pipe.make_sampler(options["num_steps"], progress=False)
    check_multiview_sampler(case, sampler)
    noise = recorded_noise(case, T)
    chunks = {"encoding_t": options["encoding_t"], "decoding_t": options["decoding_t"]}
    video = case.arg("video")
    if pipeline_class is SV4D2Pipeline:
        trajectory = Trajectory(options["elevations_deg"], options["azimuths_deg"])
        cameras = sv4d2_camera_inputs(trajectory, num_times=T)
        sample = pipe.generate(video[:options["n_frames"]], cameras, sampler, noise=noise, **chunks)
    else:
        orbit = case.arg("sv3d_views")
        azimuths = options["azimuths_deg"]
        # the script's default orbit for its n_views_sv3d views (the pipeline's default is the official 21's)
        trajectory = Trajectory(options["elevations_deg"],
                                orbit_azimuths_deg(len(orbit)) if azimuths is None else azimuths)
        cameras = sv4d_camera_inputs(trajectory, num_times=T, num_views=V)
        assert pipe.num_frames == options["n_frames"] and len(orbit) == options["n_views_sv3d"]
        sample = pipe.generate(video, pipe.orbit_views(orbit), cameras, sampler, noise=noise, **chunks)
    return multiview_outputs(sample)
