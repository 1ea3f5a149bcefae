"""The maths of diffusion: scaling, schedules, denoisers, samplers, guiders and the training loss.

Inside the library these are passed around as classes (`sampler=EulerEDMSampler`, `scaling=EpsScaling`).
`by_name(kind, name)` finds a class by its reference name only where names come in as strings: the command
line, the pipelines' `sampler=` option, reference configs' `target`s and the golden conformance runner.
"""

from . import discretization, guiders, samplers, scaling, training
from .denoiser import Denoiser, DiscreteDenoiser, append_dims
from .discretization import (
    EDMDiscretization,
    ExponentialDiscretization,
    LegacyDDPMDiscretization,
    TunedEDMDiscretization,
)
from .guiders import (
    IdentityGuider,
    LinearPredictionGuider,
    SpatiotemporalPredictionGuider,
    TrapezoidPredictionGuider,
    TrianglePredictionGuider,
    VanillaCFG,
)
from .samplers import (
    DEISSampler,
    DPMPP2MSampler,
    DPMPP2SAncestralSampler,
    DPMPP3MSampler,
    EulerAncestralSampler,
    EulerEDMSampler,
    HeunEDMSampler,
    LinearMultistepSampler,
    UniPCSampler,
)
from .scaling import EDMScaling, EpsScaling, VScaling, VScalingWithEDMcNoise
from .training import (
    DiscreteSampling,
    EDMSampling,
    EDMWeighting,
    EpsWeighting,
    StandardDiffusionLoss,
    UnitWeighting,
    VWeighting,
    ZeroSampler,
)

CATALOGUE = {
    "scaling": {c.__name__: c for c in (EDMScaling, EpsScaling, VScaling, VScalingWithEDMcNoise)},
    "discretization": {
        c.__name__: c
        for c in (EDMDiscretization, LegacyDDPMDiscretization, ExponentialDiscretization, TunedEDMDiscretization)
    },
    "denoiser": {c.__name__: c for c in (Denoiser, DiscreteDenoiser)},
    "sampler": {
        c.__name__: c
        for c in (EulerEDMSampler, HeunEDMSampler, EulerAncestralSampler, DPMPP2SAncestralSampler,
                  DPMPP2MSampler, LinearMultistepSampler, DPMPP3MSampler, DEISSampler, UniPCSampler)
    },
    "guider": {
        c.__name__: c
        for c in (VanillaCFG, IdentityGuider, LinearPredictionGuider, TrianglePredictionGuider,
                  TrapezoidPredictionGuider, SpatiotemporalPredictionGuider)
    },
    "sigma_sampler": {c.__name__: c for c in (EDMSampling, DiscreteSampling, ZeroSampler)},
    "weighting": {c.__name__: c for c in (UnitWeighting, EDMWeighting, VWeighting, EpsWeighting)},
}


def by_name(kind: str, name: str):
    """The class called `name` among minigen's `kind`s ("sampler", "scaling", "guider", ...)."""
    if kind not in CATALOGUE:
        raise ValueError(f"Unknown kind {kind!r}; expected one of {sorted(CATALOGUE)}.")
    # accept dotted reference paths such as "sgm.modules.diffusionmodules.guiders.VanillaCFG"
    short_name = name.rsplit(".", 1)[-1]
    if short_name not in CATALOGUE[kind]:
        raise ValueError(f"Unknown {kind} {name!r}; expected one of {sorted(CATALOGUE[kind])}.")
    return CATALOGUE[kind][short_name]


__all__ = [
    "by_name", "CATALOGUE", "Denoiser", "DiscreteDenoiser", "append_dims", "discretization", "guiders",
    "samplers", "scaling", "training", "StandardDiffusionLoss",
    *[name for table in CATALOGUE.values() for name in table],
]
