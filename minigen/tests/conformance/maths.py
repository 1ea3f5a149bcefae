"""Handlers for the maths cases: scalings, schedules, embeddings, weightings, denoisers, guiders, samplers."""

import inspect
import re

import torch

from minigen import diffusion
from minigen.embeddings import timestep_embedding

from .cases import Case, handles


def analytic_network(x, c_noise, cond):
    """The golden cases' stand-in for a UNet (see the golden README, "Analytic network")."""
    per_sample = (-1,) + (1,) * (x.ndim - 1)
    return (
        0.5 * torch.tanh(x)
        + 0.1 * c_noise.to(x.dtype).reshape(per_sample)
        + cond["crossattn"].mean(dim=(1, 2)).reshape(per_sample)
    )


def from_reference_config(config: dict, kind: str):
    """Build minigen's equivalent of a reference {"target": ..., "params": ...} config."""
    return diffusion.by_name(kind, config["target"])(**config.get("params", {}))


def named_object(text: str, kind: str):
    """Build from a short description: "EpsScaling", "LegacyDDPMDiscretization(defaults)" or a config dict."""
    if isinstance(text, dict):
        return from_reference_config(text, kind)
    match = re.fullmatch(r"\s*(\w+)\s*(?:\((?:defaults)?\)|\s+defaults)?\s*", text)
    if not match:
        raise ValueError(f"cannot read a {kind} from {text!r}")
    return diffusion.by_name(kind, match.group(1))()


def output_dict(case: Case, values) -> dict:
    if isinstance(values, torch.Tensor):
        values = (values,)
    return dict(zip(case.spec["outputs"], values, strict=True))


@handles("EDMScaling", "EpsScaling", "VScaling", "VScalingWithEDMcNoise",
         "UnitWeighting", "EDMWeighting", "VWeighting", "EpsWeighting")
def run_scalar_function(case: Case) -> dict:
    kind = "scaling" if "Scaling" in case.component else "weighting"
    function = diffusion.by_name(kind, case.component)(**case.kwargs)
    return output_dict(case, function(*case.call_args(), **case.call_kwargs()))


@handles("EDMDiscretization", "LegacyDDPMDiscretization")
def run_discretization(case: Case) -> dict:
    schedule = diffusion.by_name("discretization", case.component)(**case.kwargs)
    return output_dict(case, schedule(**case.call_kwargs()))


@handles("timestep_embedding")
def run_timestep_embedding(case: Case) -> dict:
    return output_dict(case, timestep_embedding(*case.call_args(), **case.kwargs, **case.call_kwargs()))


def build_denoiser(name: str, kwargs: dict):
    """A Denoiser / DiscreteDenoiser from case kwargs: the scaling's own kwargs sit beside the denoiser's."""
    kwargs = dict(kwargs)
    scaling_class = diffusion.by_name("scaling", kwargs.pop("scaling"))
    scaling_params = inspect.signature(scaling_class).parameters
    scaling = scaling_class(**{k: kwargs.pop(k) for k in list(kwargs) if k in scaling_params})
    if name == "DiscreteDenoiser":
        kwargs["discretization"] = named_object(kwargs["discretization"], "discretization")
        return diffusion.DiscreteDenoiser(scaling, **kwargs)
    return diffusion.Denoiser(scaling, **kwargs)


def parse_denoiser_note(notes: str):
    """Read "denoiser(input, sigma, c) = DiscreteDenoiser(EpsScaling, num_idx=1000, ...)(network, ...)"."""
    match = re.search(r"denoiser\(input, sigma, c\) = (\w+)\((.*?)\)\(network", notes)
    if not match:
        raise ValueError("the case notes do not say which denoiser the sampler uses")
    name, arguments = match.groups()
    kwargs = {}
    for position, argument in enumerate(a.strip() for a in arguments.split(",")):
        if position == 0:
            kwargs["scaling"] = argument
        elif "=" in argument:
            key, value = (s.strip() for s in argument.split("=", 1))
            kwargs[key] = {"True": True, "False": False}.get(value, value)
            if isinstance(kwargs[key], str) and re.fullmatch(r"-?[\d.e+-]+", value):
                kwargs[key] = float(value) if any(c in value for c in ".e") else int(value)
        elif argument.endswith("defaults"):
            kwargs["discretization"] = argument
    return build_denoiser(name, kwargs)


@handles("Denoiser", "DiscreteDenoiser")
def run_denoiser(case: Case) -> dict:
    denoiser = build_denoiser(case.component, case.kwargs)
    received = {}

    def network(x, c_noise, cond):
        received["c_noise"] = c_noise
        return analytic_network(x, c_noise, cond)

    x, sigma, cond = (case.arg(name) for name in case.call["args"][1:])  # args[0] is the network itself
    outputs = {"denoised": denoiser(network, x, sigma, cond), "c_noise_idx": received["c_noise"]}
    outputs["quantized_sigma"] = denoiser.quantize_sigma(sigma)
    return outputs


@handles("VanillaCFG", "IdentityGuider", "LinearPredictionGuider", "TrianglePredictionGuider",
         "TrapezoidPredictionGuider", "SpatiotemporalPredictionGuider")
def run_guider(case: Case) -> dict:
    guider = diffusion.by_name("guider", case.component)(**case.kwargs)
    x, sigma, cond, uc = (case.arg(name) for name in case.call["args"])
    prepared_x, prepared_sigma, prepared_cond = guider.prepare_inputs(x, sigma, cond, uc)
    outputs = {"prepared.x": prepared_x, "prepared.sigma": prepared_sigma, "denoised_in": case.expected["denoised_in"]}
    outputs.update({f"prepared.cond.{key}": value for key, value in prepared_cond.items()})
    outputs["guided"] = guider(case.expected["denoised_in"], prepared_sigma)
    return outputs


@handles("EulerEDMSampler", "HeunEDMSampler", "EulerAncestralSampler", "DPMPP2SAncestralSampler",
         "DPMPP2MSampler", "LinearMultistepSampler")
def run_sampler(case: Case) -> dict:
    kwargs = dict(case.kwargs)
    discretization = from_reference_config(kwargs.pop("discretization_config"), "discretization")
    guider_config = kwargs.pop("guider_config", None)
    guider = from_reference_config(guider_config, "guider") if guider_config else None
    sampler = diffusion.by_name("sampler", case.component)(
        discretization=discretization, guider=guider, progress=False, **kwargs
    )
    denoiser = parse_denoiser_note(case.spec["notes"])
    stored_noise = case.input_group("noise")  # "0", "1", ...: one draw per step, in order
    draws = iter(stored_noise[str(k)] for k in range(len(stored_noise)))

    def noise_sampler(like):
        noise = next(draws, None)
        assert noise is not None, f"the sampler drew more than the {len(stored_noise)} stored noise tensors"
        return noise

    x_out = sampler(
        lambda x, sigma, c: denoiser(analytic_network, x, sigma, c),
        case.arg("x"), case.arg("cond"), case.arg("uc") if case.input_group("uc") else None,
        noise_sampler=noise_sampler,
    )
    return {"x_out": x_out, "sigmas": sampler.discretization(sampler.num_steps)}
