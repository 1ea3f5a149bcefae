"""Behaviour of the maths layer beyond the golden cases: bad input, randomness, hooks, the loss."""

import math

import pytest
import torch

from minigen import diffusion
from minigen.diffusion import (
    Denoiser,
    DiscreteDenoiser,
    EDMDiscretization,
    EDMScaling,
    EDMWeighting,
    EpsScaling,
    EulerAncestralSampler,
    EulerEDMSampler,
    ExponentialDiscretization,
    LegacyDDPMDiscretization,
    LinearMultistepSampler,
    LinearPredictionGuider,
    SpatiotemporalPredictionGuider,
    StandardDiffusionLoss,
    TrianglePredictionGuider,
    UnitWeighting,
    VanillaCFG,
    ZeroSampler,
)
from minigen.embeddings import timestep_embedding


def shrinking_denoiser(x, sigma, cond):
    """A simple smooth denoiser: D(x, sigma) = x / (1 + sigma^2) (the exact one for N(0, 1) data)."""
    return x / (1 + diffusion.append_dims(sigma, x.ndim) ** 2)


ALL_SAMPLERS = sorted(diffusion.CATALOGUE["sampler"])


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize("name", ALL_SAMPLERS)
def test_num_steps_below_one_is_refused(name):
    sampler_class = diffusion.by_name("sampler", name)
    with pytest.raises(ValueError, match="num_steps"):
        sampler_class(EDMDiscretization(), num_steps=0)
    sampler = sampler_class(EDMDiscretization(), progress=False)
    with pytest.raises(ValueError, match="num_steps"):
        sampler(shrinking_denoiser, torch.randn(2, 3), {}, num_steps=-1)
    with pytest.raises(ValueError, match="num_steps"):
        sampler(shrinking_denoiser, torch.randn(2, 3), {})  # no num_steps anywhere


@pytest.mark.parametrize("schedule", [EDMDiscretization, ExponentialDiscretization])
def test_bad_sigma_ranges_are_refused(schedule):
    with pytest.raises(ValueError, match="smaller than sigma_max"):
        schedule(sigma_min=5.0, sigma_max=1.0)
    with pytest.raises(ValueError, match="smaller than sigma_max"):
        schedule(sigma_min=1.0, sigma_max=1.0)
    with pytest.raises(ValueError, match="positive"):
        schedule(sigma_min=-0.1, sigma_max=1.0)
    with pytest.raises(ValueError, match="n >= 1"):
        schedule()(0)


def test_ddpm_schedule_bad_input():
    with pytest.raises(ValueError, match="linear_start < linear_end"):
        LegacyDDPMDiscretization(linear_start=0.02, linear_end=0.001)
    with pytest.raises(ValueError, match="n <= 1000"):
        LegacyDDPMDiscretization()(1001)


def test_lms_order_below_one_is_refused():
    with pytest.raises(ValueError, match="order >= 1"):
        LinearMultistepSampler(EDMDiscretization(), order=0)


def test_guider_frames_must_divide_batch():
    guider = LinearPredictionGuider(max_scale=2.0, num_frames=4)
    with pytest.raises(ValueError, match="num_frames=4"):
        guider(torch.randn(2 * 6, 3), torch.ones(12))
    with pytest.raises(ValueError, match="multiple of num_views"):
        SpatiotemporalPredictionGuider(max_scale=2.0, num_frames=6, num_views=4)
    with pytest.raises(ValueError, match="period_fusing"):
        TrianglePredictionGuider(max_scale=2.0, num_frames=4, period_fusing="median")


def test_unknown_names_list_the_valid_ones():
    with pytest.raises(ValueError, match="EulerEDMSampler"):
        diffusion.by_name("sampler", "EulerSampler")
    with pytest.raises(ValueError, match="EDMScaling"):
        diffusion.by_name("scaling", "sgm.modules.diffusionmodules.denoiser_scaling.KarrasScaling")
    with pytest.raises(ValueError, match="Unknown kind"):
        diffusion.by_name("optimizer", "Adam")
    assert diffusion.by_name("guider", "sgm.modules.diffusionmodules.guiders.VanillaCFG") is VanillaCFG


# ---------------------------------------------------------------- sampler behaviour


@pytest.mark.parametrize("name", ALL_SAMPLERS)
def test_sampler_leaves_the_input_alone_and_calls_back_every_step(name):
    sampler = diffusion.by_name("sampler", name)(EDMDiscretization(), num_steps=5, progress=False)
    x = torch.randn(4, 3, generator=torch.Generator().manual_seed(0))
    x_before = x.clone()
    steps = []
    out = sampler(shrinking_denoiser, x, {}, callback=lambda x, denoised, sigma, step: steps.append(
        (step, float(sigma), x.shape, denoised.shape)), generator=torch.Generator().manual_seed(1))
    assert torch.equal(x, x_before)  # the reference rescales x in place; minigen does not
    assert [s[0] for s in steps] == list(range(5))
    assert all(shape == denoised_shape == (4, 3) for _, _, shape, denoised_shape in steps)
    assert steps[0][1] > steps[-1][1]  # sigmas decrease
    assert out.shape == x.shape and torch.isfinite(out).all()


@pytest.mark.parametrize("name", ["EulerAncestralSampler", "DPMPP2SAncestralSampler"])
def test_ancestral_randomness_goes_through_the_generator(name):
    sampler = diffusion.by_name("sampler", name)(EDMDiscretization(), num_steps=6, progress=False)
    x = torch.randn(8, 2, generator=torch.Generator().manual_seed(0))

    def run(seed):
        return sampler(shrinking_denoiser, x, {}, generator=torch.Generator().manual_seed(seed))

    assert torch.equal(run(3), run(3))
    assert not torch.allclose(run(3), run(4))


def test_ancestral_with_eta_zero_is_deterministic():
    """The reference crashes with eta=0; minigen takes plain deterministic steps."""
    sampler = EulerAncestralSampler(EDMDiscretization(), num_steps=10, eta=0.0, progress=False)
    x = torch.randn(8, 2, generator=torch.Generator().manual_seed(0))
    first = sampler(shrinking_denoiser, x, {}, generator=torch.Generator().manual_seed(1))
    second = sampler(shrinking_denoiser, x, {}, generator=torch.Generator().manual_seed(2))
    euler = EulerEDMSampler(EDMDiscretization(), num_steps=10, progress=False)(shrinking_denoiser, x, {})
    torch.testing.assert_close(first, second)
    torch.testing.assert_close(first, euler)


def test_churn_uses_the_generator():
    sampler = EulerEDMSampler(EDMDiscretization(), num_steps=6, s_churn=2.0, progress=False)
    x = torch.randn(8, 2, generator=torch.Generator().manual_seed(0))
    a = sampler(shrinking_denoiser, x, {}, generator=torch.Generator().manual_seed(1))
    b = sampler(shrinking_denoiser, x, {}, generator=torch.Generator().manual_seed(2))
    assert not torch.allclose(a, b)


def test_progress_bar_can_be_turned_off(capsys):
    EulerEDMSampler(EDMDiscretization(), num_steps=3, progress=False)(shrinking_denoiser, torch.randn(2, 2), {})
    captured = capsys.readouterr()
    assert captured.err == "" and captured.out == ""


# ---------------------------------------------------------------- denoisers, weightings, loss


def test_edm_weighting_is_inverse_c_out_squared():
    sigma = torch.logspace(-2, 2, 9)
    _, c_out, _, _ = EDMScaling(sigma_data=0.5)(sigma)
    torch.testing.assert_close(EDMWeighting(sigma_data=0.5)(sigma), 1 / c_out**2)


def test_discrete_denoiser_snaps_to_training_sigmas():
    denoiser = DiscreteDenoiser(EpsScaling(), num_idx=1000, discretization=LegacyDDPMDiscretization())
    sigma = torch.tensor([0.03, 1.0, 14.0])
    snapped = denoiser.quantize_sigma(sigma)
    assert set(snapped.tolist()) <= set(denoiser.sigmas.tolist())
    indices = denoiser.sigma_to_idx(sigma)
    assert indices.dtype == torch.int64 and (indices[1:] > indices[:-1]).all()


def test_loss_is_zero_for_a_perfect_denoiser_and_passes_batch_keys():
    clean = torch.randn(5, 2, 4, 4, generator=torch.Generator().manual_seed(0))
    received = {}

    def perfect_denoiser(network, noised, sigmas, cond, **extra):
        received.update(extra)
        return clean

    loss = StandardDiffusionLoss(ZeroSampler(), UnitWeighting(), batch2model_keys="num_video_frames")
    per_sample = loss(None, perfect_denoiser, lambda batch: {}, clean, {"num_video_frames": 5, "other": 1})
    assert per_sample.shape == (5,) and torch.equal(per_sample, torch.zeros(5))
    assert received == {"num_video_frames": 5}


@pytest.mark.parametrize("loss_type", ["l2", "l1"])
def test_loss_measures_the_error(loss_type):
    clean = torch.zeros(3, 2)

    def off_by_one(network, noised, sigmas, cond):
        return clean + 1.0

    loss = StandardDiffusionLoss(ZeroSampler(), UnitWeighting(), loss_type=loss_type, offset_noise_level=0.1)
    torch.testing.assert_close(loss(None, off_by_one, lambda b: {}, clean), torch.ones(3))
    with pytest.raises(ValueError, match="loss_type"):
        StandardDiffusionLoss(ZeroSampler(), loss_type="lpips")


def test_denoiser_passes_extra_inputs_to_the_network():
    seen = {}

    def network(x, c_noise, cond, **extra):
        seen.update(extra)
        return torch.zeros_like(x)

    out = Denoiser(EDMScaling())(network, torch.ones(2, 3), torch.ones(2), {}, num_video_frames=2)
    assert seen == {"num_video_frames": 2}
    torch.testing.assert_close(out, torch.full((2, 3), 0.25 / 1.25))  # c_skip at sigma = 1


def test_timestep_embedding_computes_its_frequencies_in_the_reference_order():
    """The reference multiplies -ln(max_period) by the index before dividing by half; float32 rounds differently in
    the other order, which angles near 1000 (fps, motion buckets, image sizes) amplify to 1.5e-5."""
    t = torch.tensor([0.5, 127.0, 512.0, 999.0])
    half = 128
    frequencies = torch.exp(-math.log(10000) * torch.arange(half, dtype=torch.float32) / half)
    angles = t[:, None] * frequencies[None]
    assert torch.equal(timestep_embedding(t, 2 * half), torch.cat([torch.cos(angles), torch.sin(angles)], dim=-1))


def test_timestep_embedding_shapes():
    t = torch.tensor([0.0, 10.0])
    assert timestep_embedding(t, 7).shape == (2, 7)
    assert torch.equal(timestep_embedding(t, 7)[:, -1], torch.zeros(2))  # odd dim: zero padded
    assert torch.equal(timestep_embedding(t, 3, repeat_only=True), t[:, None].expand(2, 3))
    with pytest.raises(ValueError, match="dim >= 1"):
        timestep_embedding(t, 0)
