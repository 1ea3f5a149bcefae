"""The course widgets build without a display, and moving their sliders updates their state and picture."""

import pytest
import torch

from minigen.data import toy2d
from minigen.diffusion import EDMDiscretization, EulerAncestralSampler, EulerEDMSampler
from minigen.widgets import grid_points, sampler_stepper, sigma_explorer


@pytest.fixture(scope="module")
def mixture():
    return toy2d.ring(num_modes=4, std=0.1)


def test_sigma_explorer_follows_its_slider(mixture):
    explorer = sigma_explorer(mixture, sigma=0.01, num_points=200)
    first_picture = bytes(explorer.image.value)
    assert first_picture.startswith(b"\x89PNG")
    torch.testing.assert_close(explorer.noised, explorer.clean + 0.01 * explorer.noise)

    explorer.slider.value = 10.0
    assert explorer.sigma == pytest.approx(10.0)
    assert bytes(explorer.image.value) != first_picture
    torch.testing.assert_close(explorer.noised, explorer.clean + 10.0 * explorer.noise)
    # at high noise the exact denoiser returns the data mean (the origin): every arrow x -> D is -x
    torch.testing.assert_close(explorer.arrows, -grid_points(explorer.extent, 15), atol=0.05, rtol=0)


def test_sigma_explorer_draws_a_given_denoiser(mixture):
    calls = []

    def halfway_denoiser(x, sigma, cond):
        calls.append(sigma)
        return x / 2

    explorer = sigma_explorer(mixture, halfway_denoiser, num_points=50)
    assert calls and explorer.arrows.shape == (225, 2)
    torch.testing.assert_close(explorer.arrows, -grid_points(explorer.extent, 15) / 2)


def test_sigma_explorer_refuses_a_sigma_off_the_slider(mixture):
    with pytest.raises(ValueError, match="slider's range"):
        sigma_explorer(mixture, sigma=1000.0)


def test_sampler_stepper_records_every_step_and_follows_its_slider(mixture):
    noise = torch.randn(100, 2, generator=torch.Generator().manual_seed(0))
    sampler = EulerEDMSampler(EDMDiscretization(), num_steps=6, progress=False)
    stepper = sampler_stepper(sampler, mixture.as_denoiser(), noise, mixture=mixture)
    assert len(stepper.xs) == len(stepper.denoised) == len(stepper.sigmas) == 6
    assert stepper.sigmas[0] == pytest.approx(80.0) and stepper.sigmas == sorted(stepper.sigmas, reverse=True)
    torch.testing.assert_close(stepper.xs[-1], stepper.samples)
    assert stepper.step == 0 and stepper.slider.max == 5

    first_picture = bytes(stepper.image.value)
    stepper.slider.value = 5
    assert bytes(stepper.image.value) != first_picture
    assert stepper.x is stepper.xs[5] and stepper.estimate is stepper.denoised[5]


def test_sampler_stepper_passes_the_generator_to_stochastic_samplers(mixture):
    noise = torch.randn(50, 2, generator=torch.Generator().manual_seed(0))
    sampler = EulerAncestralSampler(EDMDiscretization(), progress=False)

    def run(seed):
        generator = torch.Generator().manual_seed(seed)
        stepper = sampler_stepper(sampler, mixture.as_denoiser(), noise, num_steps=4, generator=generator)
        return stepper.samples

    torch.testing.assert_close(run(1), run(1))
    assert not torch.equal(run(1), run(2))


def test_sampler_stepper_refuses_points_that_are_not_2d(mixture):
    sampler = EulerEDMSampler(EDMDiscretization(), num_steps=2, progress=False)
    with pytest.raises(ValueError, match="shape \\(n, 2\\)"):
        sampler_stepper(sampler, mixture.as_denoiser(), torch.randn(4, 3))


def test_camera_explorer_is_reachable_from_minigen_widgets():
    from minigen import widgets

    explorer = widgets.camera_explorer()
    assert explorer.trajectory is not None


def test_every_explorer_is_one_widget_with_palette_pictures():
    """One pattern for the course's interactive views: each is an ipywidgets.VBox, displayed as it is, and its
    matplotlib pictures are palette PNGs (small enough for a notebook to keep)."""
    import io

    import ipywidgets
    import PIL.Image

    from minigen import camera_widgets, grid_widgets, orbit_widgets, video_widgets, widgets

    views = (widgets.SigmaExplorer, widgets.SamplerStepper, camera_widgets.CameraExplorer,
             orbit_widgets.OrbitExplorer, grid_widgets.ScheduleExplorer, grid_widgets.GridPlayer,
             video_widgets.ClipPlayer, video_widgets.ClipExplorer)
    assert all(issubclass(view, ipywidgets.VBox) for view in views)
    cameras = widgets.camera_explorer()
    assert PIL.Image.open(io.BytesIO(cameras.image.value)).mode == "P"
