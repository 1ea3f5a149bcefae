"""Handler for the SV4D / SV4D 2.0 UNet cases: build from case.json, load the reference weights, run."""

import torch

from minigen.nn.sv4d_unet import SpatialUNetModelWithTime

from .cases import Case, handles


@handles("SpatialUNetModelWithTime")
def run_sv4d_unet(case: Case) -> dict:
    network = SpatialUNetModelWithTime(**case.kwargs)
    network.load_state_dict(case.weights, strict=True)
    network.eval()
    with torch.no_grad():
        output = network(*case.call_args(), **case.call_kwargs())
    return dict(zip(case.spec["outputs"], (output,), strict=True))
