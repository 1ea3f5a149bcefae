"""Handlers for the network cases (nn_*): build the module from case.json, load the reference weights, run."""

import torch

from minigen.nn import transformer, unet, video, video_unet

from .cases import Case, handles

# reference class name -> minigen class; the golden kwargs are the constructor's own keyword arguments
NETWORK_CLASSES = {
    cls.__name__: cls
    for cls in (transformer.CrossAttention, transformer.FeedForward, transformer.BasicTransformerBlock,
                transformer.SpatialTransformer, video.SpatialVideoTransformer, video.VideoTransformerBlock,
                unet.UNetModel, video_unet.VideoUNet)
}


def from_config(value):
    """A nested {"target": "sgm....ClassName", "params": {...}} becomes the minigen module."""
    if isinstance(value, dict) and "target" in value:
        return build(value["target"].rsplit(".", 1)[-1], value.get("params", {}))
    return value


def build(name: str, kwargs: dict) -> torch.nn.Module:
    return NETWORK_CLASSES[name](**{key: from_config(value) for key, value in kwargs.items()})


@handles(*NETWORK_CLASSES)
def run_network(case: Case) -> dict:
    module = build(case.component, case.kwargs)
    module.load_state_dict(case.weights or {}, strict=True)
    module.eval()
    with torch.no_grad():
        output = module(*case.call_args(), **case.call_kwargs())
    return dict(zip(case.spec["outputs"], (output,), strict=True))
