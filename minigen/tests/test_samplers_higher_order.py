"""The higher-order multistep samplers (DPM-Solver++(3M), DEIS, UniPC) and the tuned schedule, golden-free.

No reference implementation is consulted: the spiral mixture's exact denoiser makes every error the sampler's own,
so the order of accuracy each paper promises is measured directly (halving the steps multiplies the error by
about 2^order), and the exact-integration weights are checked against the integrals they stand for.
"""

import math

import numpy as np
import pytest
import torch

from minigen import diffusion
from minigen.cli import CHOICES
from minigen.data.toy2d import spiral
from minigen.diffusion import EDMDiscretization, IdentityGuider, TunedEDMDiscretization
from minigen.diffusion.samplers import exponential_integral_weights
from minigen.pipelines.common import SAMPLERS, make_sampler
from minigen.tests.test_sampler_accuracy import HIGHER_ORDER  # their call counts are tested there too

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py


class EDMDiscretization64(EDMDiscretization):
    """The EDM schedule in float64, so that float32 sigmas do not limit the reference's accuracy."""

    def get_sigmas(self, n, device="cpu"):
        ramp = torch.linspace(0, 1, n, dtype=torch.float64, device=device)
        max_inv_rho, min_inv_rho = self.sigma_max ** (1 / self.rho), self.sigma_min ** (1 / self.rho)
        return (max_inv_rho + ramp * (min_inv_rho - max_inv_rho)) ** self.rho


@pytest.fixture(scope="module")
def mixture():
    mixture = spiral()
    mixture.means, mixture.stds, mixture.weights = (t.double() for t in (mixture.means, mixture.stds,
                                                                          mixture.weights))
    return mixture


@pytest.fixture(scope="module")
def noise():
    return torch.randn(256, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)


def run(mixture, name, noise, num_steps, callback=None, **options):
    sampler = diffusion.by_name("sampler", name)(EDMDiscretization64(), progress=False, **options)
    return sampler(mixture.as_denoiser(), noise, {}, num_steps=num_steps, callback=callback)


def median_l2(a, b) -> float:
    """The typical point's error (points near the border of two modes may switch mode and dominate a mean)."""
    return float((a - b).norm(dim=1).median())


@pytest.fixture(scope="module")
def reference(mixture, noise):
    """The ODE solved with 2000 DEIS steps (error ~1e-8); it agrees with 1000 Heun steps to their own ~1e-5."""
    solution = run(mixture, "DEISSampler", noise, 2000)
    assert median_l2(solution, run(mixture, "HeunEDMSampler", noise, 1000)) < 2e-5
    return solution


# ---------------------------------------------------------------- the integration weights


@pytest.mark.parametrize("rate", [1.0, -1.0])
def test_weights_integrate_every_polynomial_of_their_degree_exactly(rate):
    offsets, h = [0.0, -0.4, -1.1, 0.7], 0.7  # the current point, two past ones, the step's end (UniC)
    weights = exponential_integral_weights(offsets, h, rate)
    nodes, quadrature = np.polynomial.legendre.leggauss(40)
    u = 0.5 * h * (nodes + 1)  # Gauss-Legendre on [0, h]: exact to ~1e-15 for these smooth integrands
    for power in range(len(offsets)):
        exact = 0.5 * h * np.sum(quadrature * np.exp(rate * u) * u**power)
        assert float(weights @ np.asarray(offsets) ** power) == pytest.approx(exact, rel=1e-10, abs=1e-14)


@pytest.mark.parametrize("name", ["DPMPP3MSampler", "DEISSampler"])
def test_order_one_is_an_euler_step(mixture, noise, name):
    """With a constant polynomial the exact exponential step is Euler's, whichever of D or eps is held constant
    (UniPC's corrector would make it second order)."""
    euler = run(mixture, "EulerEDMSampler", noise, 12)
    torch.testing.assert_close(run(mixture, name, noise, 12, order=1), euler, rtol=0, atol=1e-12)


# ---------------------------------------------------------------- order of accuracy


@pytest.mark.parametrize("name, expected_order", [
    ("DPMPP3MSampler", 3),  # quadratic in D
    ("DEISSampler", 3),  # quadratic in eps
    ("UniPCSampler", 3),  # linear predictor + corrector
])
def test_error_falls_like_the_promised_order(mixture, noise, reference, name, expected_order):
    errors = [median_l2(run(mixture, name, noise, steps), reference) for steps in (40, 80, 160)]
    slope = math.log2(errors[0] / errors[2]) / 2  # halving the step size divides the error by 2^slope
    assert expected_order - 0.4 < slope < expected_order + 1.0, (slope, errors)
    assert errors[-1] < 5e-5, errors


def test_orders_are_told_apart(mixture, noise, reference):
    """The bands above must catch a wrong method: one order less is measurably slower, and UniC's correction
    buys an order over its own predictor."""
    def slope(name, **options):
        errors = [median_l2(run(mixture, name, noise, steps, **options), reference) for steps in (40, 160)]
        return math.log2(errors[0] / errors[1]) / 2

    assert slope("DEISSampler", order=2) < 2.4
    assert slope("DPMPP3MSampler", order=2) < 2.4
    predictor = median_l2(run(mixture, "DPMPP3MSampler", noise, 80, order=2), reference)
    corrected = median_l2(run(mixture, "UniPCSampler", noise, 80, order=2), reference)
    assert corrected < predictor / 3, (corrected, predictor)


def test_bad_orders_are_refused():
    for order in (0, 5, 2.0, True):
        with pytest.raises(ValueError, match="order 1, 2, 3 or 4"):
            diffusion.DEISSampler(EDMDiscretization(), order=order)


# ---------------------------------------------------------------- contract shared with the other samplers


def test_higher_order_samplers_cost_one_network_call_per_step():
    """Their order comes from earlier steps' outputs, not from extra calls (counted in test_sampler_accuracy)."""
    assert [diffusion.by_name("sampler", name).network_calls(5) for name in HIGHER_ORDER] == [5, 5, 5]


@pytest.mark.parametrize("name", HIGHER_ORDER)
def test_callback_reports_the_x_the_network_sees_next(mixture, noise, name):
    """callback(x, denoised, sigma, step): denoised = D(x of the previous callback, sigma), as for the others
    (UniPC's corrected x is internal: the network is evaluated at the predicted one)."""
    sigmas = EDMDiscretization64()(6)
    seen = []
    out = run(mixture, name, noise, 6, callback=lambda *args: seen.append(args))
    x_before = noise * math.sqrt(1 + float(sigmas[0]) ** 2)
    for (x, denoised, sigma, step), expected_sigma in zip(seen, sigmas[:-1], strict=True):
        assert float(sigma) == float(expected_sigma), step
        torch.testing.assert_close(denoised, mixture.denoise(x_before, expected_sigma))
        x_before = x
    assert [args[3] for args in seen] == list(range(6)) and seen[-1][0] is out


# ---------------------------------------------------------------- the tuned schedule and the pipelines


def test_tuned_schedule_is_edm_with_rho_15():
    tuned = TunedEDMDiscretization()
    torch.testing.assert_close(tuned(10), EDMDiscretization(rho=15.0)(10))
    assert diffusion.by_name("discretization", "TunedEDMDiscretization") is TunedEDMDiscretization
    sigmas = tuned(10)
    assert float(sigmas[0]) == pytest.approx(80.0) and float(sigmas[-2]) == pytest.approx(0.002)
    # closer to even steps in log(sigma) than rho 7: longer steps at the highest noise, shorter at the lowest
    log_steps, log_steps_rho_7 = (sigmas[:-1].log().diff().neg(), EDMDiscretization()(10)[:-1].log().diff().neg())
    assert log_steps.max() / log_steps.min() < log_steps_rho_7.max() / log_steps_rho_7.min()
    assert log_steps[0] > log_steps_rho_7[0] and log_steps[-1] < log_steps_rho_7[-1]


def test_tuned_schedule_helps_deis_at_10_steps(mixture, noise, reference):
    sampler = diffusion.DEISSampler(progress=False, discretization=TunedEDMDiscretization())
    tuned = sampler(mixture.as_denoiser(), noise, {}, num_steps=10)
    default = run(mixture, "DEISSampler", noise, 10)
    assert median_l2(tuned, reference) < median_l2(default, reference)


@pytest.mark.parametrize("name", HIGHER_ORDER)
def test_pipelines_and_cli_accept_them_by_name(name):
    assert name in SAMPLERS and name in CHOICES["sampler"]
    sampler = make_sampler(name, EDMDiscretization(sigma_max=700.0), 4, IdentityGuider(), progress=False, order=2)
    assert isinstance(sampler, diffusion.by_name("sampler", name)) and sampler.order == 2
    x = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    out = sampler(lambda x, sigma, cond: x / (1 + diffusion.append_dims(sigma, x.ndim) ** 2), x, {})
    assert out.shape == x.shape and out.dtype == torch.float32 and torch.isfinite(out).all()


def test_the_sampler_option_takes_a_class_or_its_name():
    discretization, guider = EDMDiscretization(sigma_max=700.0), IdentityGuider()
    by_class = make_sampler(diffusion.DEISSampler, discretization, 4, guider, progress=False)
    by_name = make_sampler("DEISSampler", discretization, 4, guider, progress=False)
    assert type(by_class) is type(by_name) is diffusion.DEISSampler
    for wrong in ("EulerSampler", "sgm.modules.diffusionmodules.sampling.EulerEDMSampler", diffusion.VanillaCFG, 3):
        with pytest.raises(ValueError, match="Unknown sampler .*; choose one of DEISSampler, "):
            make_sampler(wrong, discretization, 4, guider)
