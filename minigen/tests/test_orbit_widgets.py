"""Notebook 08's orbit tools: sampling at any cameras, pictures of orbits, and the explorer driving the model."""

import pytest
import torch

from minigen.camera import Trajectory, dynamic_orbit, static_orbit
from minigen.data import scenes
from minigen.diffusion import LinearPredictionGuider, TrianglePredictionGuider
from minigen.orbit_widgets import (
    OrbitResult,
    camera_titles,
    orbit_explorer,
    orbit_gif,
    sample_orbit,
    view_psnr,
    views_figure,
    views_image,
)
from minigen.pipelines.sv3d import SV3DPipeline
from minigen.recipes import quality

pytestmark = pytest.mark.usefixtures("one_thread")
STEPS = 2  # the sampling flow is what is tested, not the pictures' quality


@pytest.fixture(scope="module")
def pipe():
    return SV3DPipeline.from_preset("tiny_sv3d")


@pytest.fixture(scope="module")
def example():
    return scenes.OrbitDataset(num_views=8, size=64, length=1, seed=1)[0]


def trajectory_of(example) -> Trajectory:
    return Trajectory(example["elevations_deg"].double(), example["azimuths_deg"].double())


def test_sample_orbit_is_the_pipelines_flow(pipe, example):
    orbit = sample_orbit(pipe, example["frames"][-1:], trajectory_of(example), seed=3, num_steps=STEPS)
    values = pipe.conditions(8, example["elevations_deg"].double(), example["azimuths_deg"].double())
    sampler = pipe.make_sampler(STEPS, num_frames=8, progress=False)
    expected = pipe.generate(example["frames"][-1:], values, 8, sampler, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(orbit, expected.decoded.float().clamp(-1, 1))
    assert orbit.shape == (8, 3, 64, 64)
    torch.testing.assert_close(orbit[-1], example["frames"][-1])  # the input view ends the orbit, as it is


def test_sample_orbit_sees_only_relative_azimuths(pipe, example):
    image = example["frames"][-1:]
    at_zero = sample_orbit(pipe, image, static_orbit(8, 10.0, 0.0), num_steps=STEPS)
    turned = sample_orbit(pipe, image, static_orbit(8, 10.0, 90.0), num_steps=STEPS)
    assert torch.equal(at_zero, turned)
    higher = sample_orbit(pipe, image, static_orbit(8, 25.0, 0.0), num_steps=STEPS)
    assert not torch.equal(at_zero, higher)


def test_sample_orbit_takes_any_per_frame_guider(pipe, example):
    image, trajectory = example["frames"][-1:], trajectory_of(example)
    constant = sample_orbit(pipe, image, trajectory, num_steps=STEPS, cfg=2.0, min_cfg=2.0)
    as_guider = sample_orbit(pipe, image, trajectory, num_steps=STEPS,
                             guider=TrianglePredictionGuider(2.0, 8, min_scale=2.0))
    torch.testing.assert_close(constant, as_guider)
    linear = sample_orbit(pipe, image, trajectory, num_steps=STEPS, guider=LinearPredictionGuider(2.0, 8))
    assert not torch.equal(linear, constant)
    with pytest.raises(ValueError, match="frame scales"):
        sample_orbit(pipe, image, trajectory, num_steps=STEPS, guider=LinearPredictionGuider(2.0, 21))
    with pytest.raises(ValueError, match="one image"):
        sample_orbit(pipe, example["frames"], trajectory, num_steps=STEPS)


def test_view_psnr_is_the_quality_metric():
    generator = torch.Generator().manual_seed(0)
    images, truth = torch.rand(2, 4, 3, 8, 8, generator=generator) * 2 - 1
    torch.testing.assert_close(view_psnr(images, truth), quality.psnr(quality.to_unit(images), quality.to_unit(truth)))
    assert view_psnr(truth, truth).min() > 90  # exact: the clamp of the error, 100 dB
    with pytest.raises(ValueError, match="same shape"):
        view_psnr(images, truth[:2])


def test_pictures_of_orbits():
    trajectory = dynamic_orbit(4, 10.0, 10.0)
    assert camera_titles(trajectory)[0] == f"+90°, el {trajectory.elevations_deg[0]:.0f}°"
    assert camera_titles(trajectory)[-1] == "input, el 10°"
    views = torch.zeros(4, 3, 16, 16)
    figure = views_figure({"truth": views, "model": views[:3]}, camera_titles(trajectory),
                          {"model": ["1 dB", "2 dB", "3 dB"]})
    assert len(figure.axes) == 8
    assert views_image({"truth": views}, camera_titles(trajectory)).data.startswith(b"\x89PNG")
    assert orbit_gif(views, views).startswith(b"GIF8")


def test_explorer_samples_caches_and_refuses_bad_cameras(pipe):
    objects = [scenes.random_object(torch.Generator().manual_seed(seed)) for seed in (0, 1)]
    explorer = orbit_explorer(pipe, objects, num_steps=STEPS)
    assert explorer.children[0] is explorer.cameras  # the camera explorer is a part of this one
    assert explorer.cameras.num_frames.value == 8  # starts at what the tiny model was trained on
    result = explorer.sample()
    assert isinstance(result, OrbitResult) and explorer.result is result
    assert result.truth.shape == result.generated.shape == (8, 3, 64, 64)
    torch.testing.assert_close(result.generated[-1], result.truth[-1])  # the truth's last view is the input
    assert result.psnr.shape == (8,) and result.novel_psnr == pytest.approx(result.psnr[:-1].mean().item())
    assert bytes(explorer.image.value).startswith(b"\x89PNG")
    assert bytes(explorer.animation.value).startswith(b"GIF8")
    assert "dB" in explorer.status.value
    assert explorer.sample() is result  # cached: same object, cameras and seed

    explorer.object.value = 1
    other = explorer.sample()
    assert other is not result and len(explorer.cache) == 2

    explorer.cameras.kind.value = "dynamic orbit"
    explorer.cameras.elevation.value = 80.0
    explorer.cameras.amplitude.value = 20.0  # 80 + 20 > 90: the camera explorer reports it, nothing is sampled
    assert explorer.sample() is None and "Fix the cameras" in explorer.status.value
    assert explorer.result is other


def test_explorer_needs_objects(pipe):
    with pytest.raises(ValueError, match="at least one scene object"):
        orbit_explorer(pipe, [])
