"""Denoiser presets: how each model's network is preconditioned (the checkpoints' `denoiser.` part).

SD 2.1 and SDXL were trained on 1000 discrete DDPM noise levels (DiscreteDenoiser, which holds
their sigmas as the buffer `denoiser.sigmas`); SVD, SV3D and SV4D use a continuous EDM-style denoiser
with v-prediction. Taught in notebook 02. Reference: `denoiser_config` in the inference configs.
"""

from dataclasses import dataclass

from minigen.diffusion import (
    Denoiser,
    DiscreteDenoiser,
    EpsScaling,
    LegacyDDPMDiscretization,
    VScaling,
    VScalingWithEDMcNoise,
)


@dataclass
class DenoiserConfig:
    """The configs' `denoiser_config`: the preconditioning (scaling) and, for discrete models, the noise levels."""

    scaling: type = VScalingWithEDMcNoise  # a minigen.diffusion.scaling class: what the network predicts
    num_idx: int | None = None  # discrete models: number of training noise levels; None: continuous

    def build(self) -> Denoiser:
        """The `denoiser.` part: a Denoiser with this scaling, or a DiscreteDenoiser over num_idx DDPM levels."""
        scaling = self.scaling()
        if self.num_idx is None:
            return Denoiser(scaling)
        return DiscreteDenoiser(scaling, num_idx=self.num_idx, discretization=LegacyDDPMDiscretization())


def discrete(scaling: type) -> DenoiserConfig:
    """A DiscreteDenoiser over the 1000 DDPM noise levels the model was trained on."""
    return DenoiserConfig(scaling=scaling, num_idx=1000)


def discrete_eps() -> DenoiserConfig:
    """SD 2.1 (512 px) and SDXL: the network predicts the noise."""
    return discrete(EpsScaling)


def discrete_v() -> DenoiserConfig:
    """SD 2.1 768: the network predicts v."""
    return discrete(VScaling)


def continuous_v() -> DenoiserConfig:
    """SVD, SV3D and SV4D: v-prediction with EDM's c_noise, on a continuous sigma."""
    return DenoiserConfig()
