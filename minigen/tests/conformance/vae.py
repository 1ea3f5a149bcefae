"""Handlers for the first-stage cases: Encoder, Decoder, VideoDecoder and the engine's chunked codec."""

import pytest
import torch

from minigen.nn.autoencoder import Decoder, Encoder, VideoDecoder
from minigen.presets.first_stage import FirstStageConfig

from .cases import Case, handles

MODULES = {"Encoder": Encoder, "Decoder": Decoder, "VideoDecoder": VideoDecoder}


def load_strict(module: torch.nn.Module, case: Case) -> torch.nn.Module:
    module.load_state_dict(case.weights, strict=True)
    return module.eval()


@handles(*MODULES)
def run_module(case: Case) -> dict:
    module = load_strict(MODULES[case.component](**case.kwargs), case)
    with torch.no_grad():
        output = getattr(module, case.call.get("method", "forward"))(*case.call_args(), **case.call_kwargs())
    return dict(zip(case.spec["outputs"], (output,), strict=True))


@handles("decode_first_stage+encode_first_stage")
def run_chunked_codec(case: Case) -> dict:
    """decoded = decode(z) and encoded = encode(x) (posterior mode), both in chunks of
    `en_and_decode_n_samples_a_time` frames, with the engine's scale factor."""
    config = FirstStageConfig.from_reference(
        case.kwargs["first_stage_config"],
        scale_factor=case.kwargs["scale_factor"],
        en_and_decode_n_samples_a_time=case.kwargs.get("en_and_decode_n_samples_a_time"),
    )
    first_stage = load_strict(config.build(), case)
    with torch.no_grad():
        actual = {"decoded": first_stage.decode(case.arg("z")), "encoded": first_stage.encode(case.arg("x"))}
        if "encoded" in case.expected:
            xfail_if_encoded_is_a_sample(case, first_stage, actual)
    return actual


def xfail_if_encoded_is_a_sample(case: Case, first_stage, actual: dict) -> None:
    """Known defect of the current cases: their notes say `encoded` is the posterior mode, but the
    generator left the reference regulariser at its default (sample=True) without recording the noise.

    When `encoded` is not the mode, check what can be checked (decoded exactly; encoded as a draw
    from minigen's posterior, whose z-scores must then be standard normal) and mark the case xfail.
    """
    expected = case.expected["encoded"]
    if torch.allclose(actual["encoded"], expected, rtol=case.spec["rtol"], atol=case.spec["atol"]):
        return
    torch.testing.assert_close(actual["decoded"], case.expected["decoded"], rtol=case.spec["rtol"],
                               atol=case.spec["atol"])
    posterior = first_stage.posterior(case.arg("x"))
    z_scores = (expected / first_stage.scale_factor - posterior.mean) / posterior.std
    assert abs(z_scores.mean()) < 0.15 and abs(z_scores.std() - 1) < 0.1, (
        f"{case.id}: encoded is neither the posterior mode nor a draw from it "
        f"(z-scores mean {z_scores.mean():.3f}, std {z_scores.std():.3f})"
    )
    pytest.xfail(
        f"{case.id}: the reference 'encoded' is a posterior sample with unrecorded noise (z-scores mean "
        f"{z_scores.mean():.3f}, std {z_scores.std():.3f}), not the mode its notes describe; decoded matches "
        "and encoded is consistent with minigen's posterior. Regenerate the case with sample=False."
    )
