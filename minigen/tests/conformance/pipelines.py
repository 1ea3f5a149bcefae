"""Handler for the end-to-end pipeline cases (pipe_*): a whole DiffusionEngine built from case.json, run as the
reference sampling script runs it, through the very code the minigen pipelines use.

The engine comes from the case's reference configs alone (network, denoiser, conditioner, first stage, sampler),
loads `weights.safetensors` strictly, and the stored start noise (`randn`) and conditioning-image noise
(`cond_aug_noise`) replace the pipeline's own draws. Each network family has its own flow; a case whose
network has none fails with a message saying so.
"""

import inspect
from collections.abc import Callable

import pytest
import torch

from minigen import diffusion
from minigen.pipelines.common import input_keys
from minigen.pipelines.engine import DiffusionEngine
from minigen.pipelines.sv3d import SV3DPipeline
from minigen.pipelines.svd import SVDPipeline
from minigen.pipelines.video_common import VideoDefaults
from minigen.presets.conditioners import ConditionerConfig
from minigen.presets.denoisers import DenoiserConfig
from minigen.presets.first_stage import FirstStageConfig
from minigen.presets.networks import VideoUNetConfig

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
    scaling = config.get("params", {})["scaling_config"]["target"].rsplit(".", 1)[-1]
    return DenoiserConfig(scaling=scaling).build()


def engine_from_reference(case: Case) -> DiffusionEngine:
    """The case's VideoUNet engine with the reference weights, loaded strictly."""
    kwargs = case.kwargs
    engine = DiffusionEngine(
        network=VideoUNetConfig(**tuples(kwargs["network_config"]["params"])).build(),
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
                             guider=guider["target"].rsplit(".", 1)[-1], max_cfg=guider["params"]["max_scale"],
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
