"""Sampler accuracy on a 2D Gaussian mixture whose denoiser is exact (what benchmarks/samplers.py measures).

With the exact denoiser every error is the sampler's own discretisation error, so the orders of accuracy
the papers promise, the NFE accounting and the callback contract can be checked directly and quickly.
"""

import math

import pytest
import torch

from minigen import diffusion
from minigen.data.toy2d import spiral
from minigen.diffusion import EDMDiscretization

DETERMINISTIC = ["EulerEDMSampler", "HeunEDMSampler", "DPMPP2MSampler", "LinearMultistepSampler"]
ANCESTRAL = ["EulerAncestralSampler", "DPMPP2SAncestralSampler"]
HIGHER_ORDER = ["DPMPP3MSampler", "DEISSampler", "UniPCSampler"]  # minigen's own, beyond the reference's
SECOND_ORDER = ["HeunEDMSampler", "DPMPP2MSampler", "LinearMultistepSampler"]


class EDMDiscretization64(EDMDiscretization):
    """The EDM schedule in float64, so that float32 sigmas do not limit the reference's accuracy."""

    def get_sigmas(self, n, device="cpu"):
        return super().get_sigmas(n, device=device).double()


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py


@pytest.fixture(scope="module")
def mixture():
    mixture = spiral()
    mixture.means, mixture.stds, mixture.weights = (
        t.double() for t in (mixture.means, mixture.stds, mixture.weights)
    )
    return mixture


@pytest.fixture(scope="module")
def noise():
    return torch.randn(256, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)


def run(mixture, name, noise, num_steps, seed=0, **kwargs):
    sampler = diffusion.by_name("sampler", name)(EDMDiscretization64(), progress=False)
    return sampler(mixture.as_denoiser(), noise, {}, num_steps=num_steps,
                   generator=torch.Generator().manual_seed(seed), **kwargs)


def mean_l2(a, b) -> float:
    return float((a - b).norm(dim=1).mean())


def median_l2(a, b) -> float:
    """The typical point's error (points near the border of two modes may switch mode and dominate a mean)."""
    return float((a - b).norm(dim=1).median())


@pytest.fixture(scope="module")
def reference(mixture, noise):
    """The probability-flow ODE solved with 1000 Heun steps (error ~1e-5, far below anything tested)."""
    return run(mixture, "HeunEDMSampler", noise, 1000)


def test_second_order_samplers_beat_euler_at_25_steps(mixture, noise, reference):
    errors = {name: mean_l2(run(mixture, name, noise, 25), reference) for name in DETERMINISTIC}
    for name in SECOND_ORDER:
        assert errors[name] < 0.3 * errors["EulerEDMSampler"], errors


@pytest.mark.parametrize("name", DETERMINISTIC)
def test_deterministic_samplers_converge_to_the_reference_at_their_order(mixture, noise, reference, name):
    errors = [median_l2(run(mixture, name, noise, steps), reference) for steps in (25, 50, 100)]
    assert errors[0] > errors[1] > errors[2], errors
    order = math.log2(errors[1] / errors[2])  # halving the step size divides the error by 2^order
    if name == "EulerEDMSampler":
        assert 0.7 < order < 1.4, (order, errors)
        assert errors[-1] < 0.01, errors
    else:
        assert order > 1.7, (order, errors)
        assert errors[-1] < 1e-3, errors


@pytest.mark.parametrize("name", DETERMINISTIC + ANCESTRAL + HIGHER_ORDER)
@pytest.mark.parametrize("num_steps", [1, 2, 3, 7])
def test_denoiser_calls_match_network_calls(mixture, noise, name, num_steps):
    """Every sampler calls the network as often as it says; one-call samplers call it at each step's start."""
    calls = []

    def counting_denoiser(x, sigma, cond):
        calls.append(float(sigma[0]))
        return mixture.denoise(x, sigma)

    sampler = diffusion.by_name("sampler", name)(EDMDiscretization64(), progress=False)
    sampler(counting_denoiser, noise, {}, num_steps=num_steps, generator=torch.Generator().manual_seed(0))
    assert len(calls) == sampler.network_calls(num_steps)
    if sampler.network_calls_per_step == 1:
        assert calls == [float(sigma) for sigma in EDMDiscretization64()(num_steps)[:-1]]


@pytest.mark.parametrize("name", DETERMINISTIC + ANCESTRAL)
def test_callback_sees_every_step_with_the_documented_arguments(mixture, noise, name):
    """callback(x, denoised, sigma, step) once per step: x after the step, denoised = D(x before, sigma)."""
    num_steps = 6
    sigmas = EDMDiscretization64()(num_steps)
    seen = []
    def callback(x, denoised, sigma, step):
        seen.append((x.clone(), denoised.clone(), sigma, step))

    out = run(mixture, name, noise, num_steps, callback=callback)
    assert [step for *_, step in seen] == list(range(num_steps))
    x_before = noise * math.sqrt(1 + float(sigmas[0]) ** 2)
    for (x, denoised, sigma, step), expected_sigma in zip(seen, sigmas[:-1], strict=True):
        assert float(sigma) == pytest.approx(float(expected_sigma), rel=1e-12), step
        torch.testing.assert_close(denoised, mixture.denoise(x_before, expected_sigma))
        x_before = x
    torch.testing.assert_close(seen[-1][0], out, rtol=0, atol=0)


@pytest.mark.parametrize("name", ANCESTRAL)
def test_ancestral_samplers_are_reproducible_and_land_on_the_modes(mixture, noise, name):
    first, again, other = (run(mixture, name, noise, 50, seed=seed) for seed in (3, 3, 4))
    assert torch.equal(first, again)
    assert mean_l2(first, other) > 0.05  # another seed gives other samples, not a rounding difference
    distances = (first[:, None, :] - mixture.means[None]).norm(dim=-1) / mixture.stds  # n k, in mode stds
    assert (distances.min(dim=1).values < 4).float().mean() > 0.95


def test_progress_false_prints_nothing_and_true_does(mixture, noise, capsys):
    sampler = diffusion.EulerEDMSampler(EDMDiscretization64(), num_steps=3, progress=False)
    sampler(mixture.as_denoiser(), noise, {})
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == ""
    sampler.progress = True
    sampler(mixture.as_denoiser(), noise, {})
    assert "EulerEDMSampler" in capsys.readouterr().err  # the bar's description: the test can fail
