"""The 2D mixtures: exact denoiser, density and score agree with each other and with sampling."""

import pytest
import torch

from minigen.data import toy2d
from minigen.diffusion import EDMDiscretization, EDMScaling, EulerEDMSampler


@pytest.mark.parametrize("name", sorted(toy2d.MIXTURES))
def test_density_integrates_to_one(name):
    mixture = toy2d.make_mixture(name)
    axis = torch.linspace(-4, 4, 401)
    points = torch.cartesian_prod(axis, axis)
    cell = (axis[1] - axis[0]) ** 2
    for sigma in (0.0, 0.3):
        total = (mixture.log_density(points, sigma).exp() * cell).sum()
        assert total == pytest.approx(1.0, abs=1e-2)


def test_exact_denoiser_matches_monte_carlo_posterior_mean():
    """E[x0 | x] estimated by importance weighting clean samples with the noise likelihood."""
    mixture = toy2d.ring()
    generator = torch.Generator().manual_seed(0)
    clean = mixture.sample(200_000, generator=generator)
    sigma = 0.4
    x = torch.tensor([[0.7, 0.3], [-0.2, -0.9]])
    log_weights = -((x[:, None, :] - clean[None]) ** 2).sum(-1) / (2 * sigma**2)  # 2 n
    estimate = (torch.softmax(log_weights, dim=1)[..., None] * clean[None]).sum(1)
    torch.testing.assert_close(mixture.denoise(x, sigma), estimate, atol=1e-2, rtol=0)


def test_score_is_gradient_of_log_density():
    mixture = toy2d.spiral()
    x = torch.randn(16, 2, generator=torch.Generator().manual_seed(1)).requires_grad_()
    sigma = 0.25
    (gradient,) = torch.autograd.grad(mixture.log_density(x, sigma).sum(), x)
    torch.testing.assert_close(mixture.score(x.detach(), sigma), gradient, atol=1e-4, rtol=1e-4)


def test_denoiser_limits():
    mixture = toy2d.grid()
    x = torch.tensor([[0.3, -0.2]])
    torch.testing.assert_close(mixture.denoise(x, 1e-4), x, atol=1e-4, rtol=0)  # no noise: D(x) = x
    data_mean = (mixture.weights[:, None] * mixture.means).sum(0, keepdim=True)
    torch.testing.assert_close(mixture.denoise(x, 1e4), data_mean, atol=1e-4, rtol=0)  # all noise: the mean


def test_sampling_with_exact_denoiser_lands_on_the_ring():
    mixture = toy2d.ring(radius=1.0, std=0.05)
    sampler = EulerEDMSampler(EDMDiscretization(), num_steps=40, progress=False)
    samples = sampler(mixture.as_denoiser(), torch.randn(1000, 2, generator=torch.Generator().manual_seed(2)), {})
    radii = samples.norm(dim=1)
    assert radii.mean() == pytest.approx(1.0, abs=0.02)
    assert radii.std() < 0.1


def test_tiny_mlp_learns_the_mixture():
    mixture = toy2d.ring()
    denoiser, _, losses = toy2d.train_toy_denoiser(mixture, EDMScaling(mixture.std), steps=600)
    assert sum(losses[-50:]) / 50 < 0.85 * sum(losses[:50]) / 50
    sampler = EulerEDMSampler(EDMDiscretization(), num_steps=30, progress=False)
    samples = sampler(denoiser, torch.randn(500, 2, generator=torch.Generator().manual_seed(3)), {})
    assert mixture.log_density(samples).mean() > mixture.log_density(torch.randn(500, 2)).mean() + 2


def test_bad_mixture_input():
    with pytest.raises(ValueError, match="Expected means"):
        toy2d.GaussianMixture2D(torch.zeros(3, 3), torch.ones(3), torch.ones(3))
    with pytest.raises(ValueError, match="positive"):
        toy2d.GaussianMixture2D(torch.zeros(2, 2), torch.tensor([0.1, -1.0]), torch.ones(2))
    with pytest.raises(ValueError, match="Unknown mixture"):
        toy2d.make_mixture("moons")
