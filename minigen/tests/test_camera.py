"""Cameras: conventions, the scripts' default trajectories, validation, embeddings and their cache, the explorer.

Expected values are written as independent formulas from reading the reference scripts
(scripts/sampling/simple_video_sample.py, simple_video_sample_4d.py, simple_video_sample_4d2.py).
"""

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from minigen import camera
from minigen.embeddings import timestep_embedding

finite = {"allow_nan": False, "allow_infinity": False}
elevations = st.floats(-90, 90, **finite)
azimuths = st.floats(0, 360, **finite)


def numpy_rad(values_deg):
    return torch.tensor(np.deg2rad(np.asarray(values_deg, dtype=np.float64)))


# ------------------------------------------------------------------------------------------------ conventions


def test_polar_is_ninety_minus_elevation_in_radians():
    polars = camera.elevation_to_polar_rad([90, 10, 0, -90])
    assert torch.allclose(polars, torch.tensor([0.0, math.radians(80), math.pi / 2, math.pi], dtype=torch.float64))


def test_relative_azimuths_wrap_into_a_turn():
    assert camera.relative_azimuths_deg([30, 350, 10]).tolist() == [20, 340, 0]
    assert camera.relative_azimuths_deg([30, 350, 10], reference_index=0).tolist() == [0, 320, 340]


@given(st.lists(elevations, min_size=1, max_size=30))
def test_elevation_polar_round_trip(values):
    back = camera.polar_rad_to_elevation(camera.elevation_to_polar_rad(values))
    assert torch.allclose(back, torch.tensor(values, dtype=torch.float64), atol=1e-9)


@given(st.lists(azimuths, min_size=1, max_size=30))
def test_azimuth_degrees_radians_round_trip(values):
    degrees = torch.tensor(values, dtype=torch.float64)
    assert torch.allclose(torch.rad2deg(torch.deg2rad(degrees)), degrees, atol=1e-9)


def test_trajectory_is_immutable_plain_floats():
    trajectory = camera.Trajectory(np.float32(5.0), np.array([10.0, 20.0]))
    assert trajectory.elevations_deg == (5.0, 5.0) and all(type(a) is float for a in trajectory.azimuths_deg)
    with pytest.raises(AttributeError):
        trajectory.name = "other"


# ----------------------------------------------------------------------------------- the scripts' defaults


def test_sv3d_p_default_matches_the_script():
    expected_azimuths = np.linspace(0, 360, 22)[1:] % 360  # the script's default, then relative to the last one
    expected_relative = (expected_azimuths - expected_azimuths[-1]) % 360
    inputs = camera.camera_inputs("sv3d_p")
    assert torch.allclose(inputs["polars_rad"], numpy_rad([90 - 10.0] * 21))
    assert torch.allclose(inputs["azimuths_rad"], numpy_rad(expected_relative))
    assert camera.default_trajectory("sv3d_p").azimuths_deg[-1] == 0.0  # the input view is the last frame


def test_sv4d_default_matches_the_script():
    # 8 of SV3D's 21 views, each at azimuth (view index) * 360 / 21 from the input view, 5 time frames (t v)
    views = np.array([2, 5, 7, 9, 12, 14, 16, 19])
    inputs = camera.camera_inputs("sv4d")
    assert inputs["azimuth_rad"].shape == (40,)
    assert torch.allclose(inputs["azimuth_rad"], numpy_rad(np.tile(views * 360 / 21, 5)))
    assert torch.allclose(inputs["polar_rad"], numpy_rad(np.full(40, 80.0)))


def test_sv4d_subsampled_views_follow_the_scripts_spacing():
    assert camera.sv4d_subsampled_views() == camera.SV4D_SUBSAMPLED_VIEWS  # the script's list for 21 and 8
    assert camera.sv4d_subsampled_views(5, 2) == (0, 2, 3)  # round(linspace(0, 5, 4)[:-1]), a tiny orbit
    inputs = camera.sv4d_camera_inputs(camera.static_orbit(5, 10.0), num_times=3, num_views=2)
    assert torch.allclose(inputs["azimuth_rad"], numpy_rad(np.tile([144.0, 216.0], 3)))
    with pytest.raises(ValueError, match="num_views"):
        camera.sv4d_subsampled_views(5, 5)


@pytest.mark.parametrize(
    "model, novel_azimuths, num_times",
    [("sv4d2", [60, 120, 180, 240], 12), ("sv4d2_8views", [30, 75, 120, 165, 210, 255, 300, 330], 5)],
)
def test_sv4d2_defaults_match_the_script(model, novel_azimuths, num_times):
    inputs = camera.camera_inputs(model)
    assert torch.allclose(inputs["azimuth_rad"], numpy_rad(np.tile(novel_azimuths, num_times)))
    assert torch.allclose(inputs["polar_rad"], torch.full((len(novel_azimuths) * num_times,), math.pi / 2,
                                                          dtype=torch.float64))


def test_sv4d2_polars_are_relative_to_the_input_view():
    trajectory = camera.Trajectory([20, 30, 20], [0, 90, 180])
    polars = camera.sv4d2_camera_inputs(trajectory, num_times=1)["polar_rad"]
    assert torch.allclose(polars, numpy_rad([80.0, 90.0]))  # 10 degrees above the input view, then level with it


def test_orbits():
    static = camera.static_orbit(4, 20.0, azimuth_offset_deg=30)
    assert static.azimuths_deg == (120.0, 210.0, 300.0, 30.0) and set(static.elevations_deg) == {20.0}
    dynamic = camera.dynamic_orbit(4, 10.0, amplitude_deg=5.0)
    assert np.allclose(dynamic.elevations_deg, [15, 10, 5, 10])
    # rotating a whole orbit does not change what SV3D_p sees: azimuths are relative to the input view
    assert torch.allclose(static.relative_azimuths_rad, camera.static_orbit(4, 20.0).relative_azimuths_rad)


# ------------------------------------------------------------------------------------------------ validation


def test_validation_lists_every_problem_at_once():
    with pytest.raises(ValueError) as error:
        camera.validate_cameras([95, float("nan"), -91, 0], [10, 400, float("inf")], 4)
    message = str(error.value)
    assert "5 problems" in message
    for fragment in ("azimuths_deg has 3 values; expected 4", "elevations_deg are not finite at frames 1",
                     "azimuths_deg are not finite at frames 2", "outside [-90, 90] at frames 0 (95), 2 (-91)",
                     "outside [0, 360] at frames 1 (400)"):
        assert fragment in message


def test_sorting_is_an_option():
    unsorted = [10, 50, 30, 70]
    camera.validate_cameras(0, unsorted, 4)
    with pytest.raises(ValueError, match=r"not sorted.*1->2 \(50 -> 30\)"):
        camera.validate_cameras(0, unsorted, 4, require_sorted=True)
    camera.validate_cameras(0, [200, 300, 10, 100], 4, require_sorted=True)  # one wrap past 360 is an orbit
    with pytest.raises(ValueError, match="not sorted"):
        camera.validate_cameras(0, [0, 180, 360], 3, require_sorted=True)  # 0 and 360 are the same camera


def test_sv3d_p_inputs_check_frames_and_order():
    with pytest.raises(ValueError, match="expected 21"):
        camera.sv3d_p_camera_inputs(camera.static_orbit(20))
    shuffled = camera.Trajectory(10.0, [*range(20, 0, -1), 0])
    with pytest.raises(ValueError, match="not sorted"):
        camera.sv3d_p_camera_inputs(shuffled)
    assert camera.sv3d_p_camera_inputs(shuffled, require_sorted=False)["azimuths_rad"].shape == (21,)


def test_nothing_is_clamped():
    with pytest.raises(ValueError, match="outside"):
        camera.dynamic_orbit(21, elevation_deg=80, amplitude_deg=20)
    with pytest.raises(ValueError, match="sequence of numbers"):
        camera.validate_cameras("high", [0.0], 1)


@st.composite
def valid_cameras(draw):
    num_frames = draw(st.integers(1, 25))
    return (draw(st.lists(elevations, min_size=num_frames, max_size=num_frames)),
            draw(st.lists(azimuths, min_size=num_frames, max_size=num_frames)), num_frames)


@given(valid_cameras())
def test_any_valid_trajectory_passes_and_round_trips(cameras):
    elevations_deg, azimuths_deg, num_frames = cameras
    camera.validate_cameras(elevations_deg, azimuths_deg, num_frames)
    trajectory = camera.Trajectory(elevations_deg, azimuths_deg)
    assert np.allclose(camera.polar_rad_to_elevation(trajectory.polars_rad), elevations_deg, atol=1e-9)
    relative = trajectory.relative_azimuths_rad
    assert ((relative >= 0) & (relative <= 2 * math.pi)).all()  # 360 only by rounding, e.g. (0 - 1e-81) % 360


@given(valid_cameras(), st.data())
def test_any_out_of_range_value_is_reported(cameras, data):
    elevations_deg, azimuths_deg, num_frames = cameras
    frame = data.draw(st.integers(0, num_frames - 1))
    bad_elevation = data.draw(st.floats(90, 1e6, exclude_min=True, **finite) | st.floats(-1e6, -90, exclude_max=True,
                                                                                          **finite))
    bad_azimuth = data.draw(st.floats(360, 1e6, exclude_min=True, **finite) | st.floats(-1e6, 0, exclude_max=True,
                                                                                        **finite))
    elevations_deg[frame], azimuths_deg[frame] = bad_elevation, bad_azimuth
    with pytest.raises(ValueError) as error:
        camera.validate_cameras(elevations_deg, azimuths_deg, num_frames)
    assert f"elevations_deg outside [-90, 90] at frames {frame} (" in str(error.value)
    assert f"azimuths_deg outside [0, 360] at frames {frame} (" in str(error.value)


@settings(max_examples=50)
@given(st.lists(st.floats(0, 359.9, **finite), min_size=2, max_size=21, unique=True), st.floats(0, 360, **finite))
def test_sorted_rotated_orbits_pass_the_order_check(values, offset):
    orbit = (np.sort(values) + offset) % 360  # increasing, then rotated: wraps past 360 at most once
    if len(set(orbit.tolist())) == len(orbit):  # rotation can merge values at float precision
        camera.validate_cameras(0.0, orbit, len(orbit), require_sorted=True)


# ------------------------------------------------------------------------------------------------ embeddings


def test_camera_embedding_is_the_two_timestep_embeddings():
    inputs = camera.camera_inputs("sv3d_p")
    embedding = camera.camera_embedding(inputs["polars_rad"], inputs["azimuths_rad"])
    assert embedding.shape == (21, 1024)
    assert torch.equal(embedding[:, :512], timestep_embedding(inputs["polars_rad"], 512))
    assert torch.equal(embedding[:, 512:], timestep_embedding(inputs["azimuths_rad"], 512))


def test_camera_embedding_cache_identity_keys_and_bound():
    camera.clear_camera_embedding_cache()
    polars, azimuths = [1.0, 1.2], [0.5, 0.0]
    first = camera.camera_embedding(polars, azimuths)
    same_angles = torch.tensor(polars, dtype=torch.float64), np.array(azimuths)
    assert camera.camera_embedding(*same_angles) is first  # same angles, whatever the container: same tensor
    assert camera.camera_embedding_cache_info().hits == 1
    assert camera.camera_embedding([1.0, 1.2], [0.5, 0.1]) is not first  # keyed by every angle
    assert camera.camera_embedding(polars, azimuths, dim=8).shape == (2, 16)  # and by the dimension
    for shift in range(3 * camera.CAMERA_EMBEDDING_CACHE_SIZE):
        camera.camera_embedding([shift], [0.0])
    assert camera.camera_embedding_cache_info().currsize == camera.CAMERA_EMBEDDING_CACHE_SIZE
    assert camera.camera_embedding(polars, azimuths) is not first  # evicted, recomputed...
    assert torch.equal(camera.camera_embedding(polars, azimuths), first)  # ...to the same values


def test_camera_embedding_needs_matching_lengths():
    with pytest.raises(ValueError, match="one polar per azimuth"):
        camera.camera_embedding([1.0, 2.0], [0.0])


# -------------------------------------------------------------------------------------------------- geometry


@given(valid_cameras())
def test_cameras_sit_on_the_sphere_and_look_at_the_object(cameras):
    elevations_deg, azimuths_deg, _ = cameras
    positions = camera.camera_positions(elevations_deg, azimuths_deg, radius=2.0)
    assert torch.allclose(positions.norm(dim=-1), torch.full((len(positions),), 2.0, dtype=torch.float64))
    poses = camera.look_at(positions)
    rotations = poses[:, :3, :3]
    assert torch.allclose(rotations.transpose(1, 2) @ rotations, torch.eye(3, dtype=torch.float64), atol=1e-9)
    assert torch.allclose(torch.linalg.det(rotations), torch.ones(len(poses), dtype=torch.float64))
    assert torch.allclose(-rotations[:, :, 2] * 2.0, -positions, atol=1e-9)  # looking along -z hits the origin


def test_camera_at_eye_level_and_azimuth_zero_is_on_x():
    assert torch.allclose(camera.camera_positions(0.0, 0.0, 1.0), torch.tensor([[1.0, 0, 0]], dtype=torch.float64))
    assert torch.allclose(camera.camera_positions(90.0, 0.0, 1.0)[0, 2], torch.tensor(1.0, dtype=torch.float64))


# ---------------------------------------------------------------------------------------------------- widget


def test_explorer_sliders_drive_the_trajectory():
    pytest.importorskip("ipywidgets")
    from minigen.camera_widgets import camera_explorer

    explorer = camera_explorer()
    assert explorer.trajectory == camera.default_trajectory("sv3d_p")
    assert explorer.image.value[:4] == b"\x89PNG"
    explorer.num_frames.value = 8
    explorer.elevation.value = 30.0
    assert explorer.trajectory == camera.static_orbit(8, 30.0)
    explorer.kind.value = "dynamic orbit"
    explorer.amplitude.value = 20.0
    assert explorer.trajectory == camera.dynamic_orbit(8, 30.0, 20.0)
    explorer.elevation.value = 80.0  # 80 + 20 is above the pole: reported, trajectory unchanged
    assert "outside [-90, 90]" in explorer.message.value
    assert explorer.trajectory == camera.dynamic_orbit(8, 30.0, 20.0)
    explorer.kind.value = "SV4D 2.0 default"
    assert explorer.trajectory == camera.default_trajectory("sv4d2") and explorer.elevation.disabled
    assert "network azimuth" in explorer.angles.value
