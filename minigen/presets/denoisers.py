"""Denoiser presets: how each model's network is preconditioned (the checkpoints' `denoiser.` part).

SD 2.1 and SDXL were trained on 1000 discrete DDPM noise levels (DiscreteDenoiser, which holds
their sigmas as the buffer `denoiser.sigmas`); SVD, SV3D and SV4D use a continuous EDM-style denoiser
with v-prediction. Taught in notebook 02. Reference: `denoiser_config` in the inference configs.
"""

from dataclasses import dataclass

from minigen.diffusion import Denoiser, DiscreteDenoiser, LegacyDDPMDiscretization, by_name

from . import register_part


@dataclass
class DenoiserConfig:
    scaling: str = "VScalingWithEDMcNoise"  # a minigen.diffusion.scaling class name
    num_idx: int | None = None  # discrete models: number of training noise levels; None: continuous

    def build(self) -> Denoiser:
        scaling = by_name("scaling", self.scaling)()
        if self.num_idx is None:
            return Denoiser(scaling)
        return DiscreteDenoiser(scaling, num_idx=self.num_idx, discretization=LegacyDDPMDiscretization())


def discrete(scaling: str) -> DenoiserConfig:
    return DenoiserConfig(scaling=scaling, num_idx=1000)


OFFICIAL = {
    "sd_2_1": lambda: discrete("EpsScaling"),
    "sd_2_1_768": lambda: discrete("VScaling"),
    **{name: (lambda: discrete("EpsScaling")) for name in ("sd_xl_base", "sd_xl_refiner", "sd_xl_turbo")},
    **{name: DenoiserConfig for name in ("svd", "svd_xt", "svd_xt_1_1", "svd_image_decoder", "svd_xt_image_decoder",
                                         "sv3d_u", "sv3d_p", "sv4d", "sv4d2", "sv4d2_8views")},
}
TINY = {
    "tiny_sd": lambda: discrete("EpsScaling"),
    "tiny_sdxl": lambda: discrete("EpsScaling"),
    **{name: DenoiserConfig for name in ("tiny_svd", "tiny_sv3d", "tiny_sv4d", "tiny_sv4d2")},
}

for _name, _factory in OFFICIAL.items():
    register_part("denoiser", _name, _factory, official=True)
for _name, _factory in TINY.items():
    register_part("denoiser", _name, _factory)
