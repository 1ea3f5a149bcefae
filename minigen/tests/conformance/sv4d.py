"""Handler for the SV4D / SV4D 2.0 UNet cases: build from case.json, load the reference weights, run."""

import torch

from minigen.presets.sv4d import SpatialUNetConfig

from .cases import Case, handles


@handles("SpatialUNetModelWithTime")
def run_sv4d_unet(case: Case) -> dict:
    """The reference network_config built through its preset, loaded strictly, run on the case's inputs."""
    network = SpatialUNetConfig(**case.kwargs).build()  # the preset takes the config keys the module does not
    network.load_state_dict(case.weights, strict=True)
    network.eval()
    with torch.no_grad():
        output = network(*case.call_args(), **case.call_kwargs())
    return dict(zip(case.spec["outputs"], (output,), strict=True))
