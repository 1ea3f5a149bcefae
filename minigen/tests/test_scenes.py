"""The scene renderer and its datasets: exact cameras, determinism, measured motion and the batch layouts."""

import math

import pytest
import torch

from minigen.camera import Trajectory, sv4d2_camera_inputs
from minigen.data.scenes import (
    SHAPES,
    MotionVideoDataset,
    MovingObjectDataset,
    OrbitDataset,
    SceneObject,
    measure_motion,
    motion_bucket,
    moving_object_batch,
    orbit_batch,
    project,
    random_object,
    render,
    sliding_clip,
    video_batch,
)

SIZE = 32


def upright(shape: str) -> SceneObject:
    """A random object of `shape` turned back upright (its z axis up), so its pole is on top."""
    obj = random_object(torch.Generator().manual_seed(1), shapes=(shape,))
    obj.rotation = torch.eye(3)
    return obj


def camera_towards(direction: torch.Tensor) -> tuple[float, float]:
    """Elevation and azimuth (degrees) of a camera in world `direction` from the origin."""
    x, y, z = torch.nn.functional.normalize(direction, dim=0).tolist()
    return math.degrees(math.asin(z)), math.degrees(math.atan2(y, x)) % 360


def pixel(image: torch.Tensor, xy: torch.Tensor) -> torch.Tensor:
    """The colour `3` of `image` (3 h w) at pixel coordinates (x = column, y = row)."""
    column, row = xy.round().long().tolist()
    return image[:, row, column]


# ------------------------------------------------------------------------------------------------ cameras


@pytest.mark.parametrize("shape", ["sphere", "box", "cylinder", "torus"])
def test_the_pole_projects_onto_pixels_of_the_pole_colour(shape):
    obj = random_object(torch.Generator().manual_seed(7), shapes=(shape,))
    tilt = math.radians(40)  # a camera 40 degrees from the object's +z axis sees its pole off-centre
    elevation, azimuth = camera_towards(math.cos(tilt) * obj.rotation[:, 2] + math.sin(tilt) * obj.rotation[:, 0])
    image = render(obj, elevation, azimuth, size=64)[0]
    xy = project(obj.pole_position()[None], elevation, azimuth, size=64)[0, 0]
    assert (xy - 31.5).abs().max() > 3, "the pole should not sit at the centre, or the test proves little"
    assert torch.allclose(pixel(image, xy), obj.pole_colour * 2 - 1, atol=1e-5)


def test_the_object_centre_projects_to_the_image_centre():
    xy = project(torch.zeros(1, 3), [-30.0, 0.0, 45.0, 90.0], [0.0, 100.0, 200.0, 300.0], size=SIZE)
    assert torch.allclose(xy, torch.full_like(xy, (SIZE - 1) / 2), atol=1e-4)


def test_looking_down_from_elevation_90_shows_the_pole_at_the_centre():
    obj = upright("cylinder")
    image = render(obj, 90.0, 0.0, size=SIZE)[0]
    assert torch.allclose(image[:, SIZE // 2, SIZE // 2], obj.pole_colour * 2 - 1, atol=1e-5)
    assert torch.allclose(project(obj.pole_position()[None], 90.0, 0.0, size=SIZE), torch.tensor((SIZE - 1) / 2))


def test_opposite_views_differ_and_are_not_mirror_images():
    obj = random_object(torch.Generator().manual_seed(3))
    front, back = render(obj, [10.0, 10.0], [0.0, 180.0], size=SIZE)
    assert (front - back).abs().mean() > 0.05
    assert (front.flip(-1) - back).abs().mean() > 0.05


def test_images_are_on_white_and_in_range():
    objects = [random_object(torch.Generator().manual_seed(seed)) for seed in range(4)]
    images = render(objects[0], [-20.0, 0.0, 40.0], [0.0, 120.0, 240.0], size=SIZE)
    assert images.shape == (3, 3, SIZE, SIZE) and images.dtype == torch.float32
    assert images.min() >= -1 and images.max() <= 1
    corners = images[:, :, [0, 0, -1, -1], [0, -1, 0, -1]]
    assert (corners == 1).all()
    assert (images < 0.9).any(dim=1).float().mean() > 0.1, "the object should cover a good part of the frame"
    several = render(objects, [0.0], [0.0], size=SIZE)  # several objects composite without error
    assert several.shape == (1, 3, SIZE, SIZE)


@pytest.mark.parametrize("kwargs, message", [
    ({"elevations_deg": [float("nan")]}, "elevations_deg must be finite"),
    ({"azimuths_deg": [float("inf")]}, "azimuths_deg must be finite"),
    ({"elevations_deg": [95.0]}, "must lie in \\[-90, 90\\]"),
    ({"radius": 0.5}, "puts the camera inside the scene"),
    ({"fov_deg": 180.0}, "fov_deg must lie in \\(0, 180\\)"),
    ({"fov_deg": 0.0}, "fov_deg must lie in \\(0, 180\\)"),
    ({"size": 4}, "size must be at least 8"),
    ({"elevations_deg": [0.0, 10.0], "azimuths_deg": [0.0, 10.0, 20.0]}, "got 2 elevations and 3 azimuths"),
])
def test_impossible_cameras_raise(kwargs, message):
    obj = random_object(torch.Generator().manual_seed(0))
    arguments = {"elevations_deg": [0.0], "azimuths_deg": [0.0], **kwargs}
    with pytest.raises(ValueError, match=message):
        render(obj, arguments.pop("elevations_deg"), arguments.pop("azimuths_deg"), **arguments)


def test_points_behind_the_camera_cannot_be_projected():
    with pytest.raises(ValueError, match="behind a camera"):
        project(torch.tensor([[10.0, 0.0, 0.0]]), 0.0, 0.0)


# ----------------------------------------------------------------------------------------------- datasets


def test_items_depend_only_on_seed_and_index():
    first, second = OrbitDataset(num_views=4, size=SIZE, length=5), OrbitDataset(num_views=4, size=SIZE, length=5)
    late = first[3]
    first[1]
    assert torch.equal(second[3]["frames"], late["frames"]) and second[3]["object_seed"] == late["object_seed"]
    assert second[3]["shape"] == late["shape"] in SHAPES
    other_seed = OrbitDataset(num_views=4, size=SIZE, length=5, seed=1)[3]
    assert other_seed["object_seed"] != late["object_seed"]
    assert not torch.equal(other_seed["frames"], late["frames"])
    with pytest.raises(IndexError):
        first[5]


def test_orbit_items_follow_sv3d_p():
    dataset = OrbitDataset(num_views=6, size=SIZE, length=3, elevation_range=(0.0, 20.0))
    item = dataset[0]
    assert item["frames"].shape == (6, 3, SIZE, SIZE) and item["frames"].dtype == torch.float32
    assert item["elevations_deg"].dtype == item["azimuths_deg"].dtype == torch.float32
    assert ((item["elevations_deg"] >= 0) & (item["elevations_deg"] <= 20)).all()
    steps = torch.remainder(item["azimuths_deg"].diff(), 360.0)
    assert torch.allclose(steps, torch.full_like(steps, 60.0), atol=1e-3)  # evenly round; the input view last
    static = OrbitDataset(num_views=6, size=SIZE, length=3, dynamic=False)[0]["elevations_deg"]
    assert torch.all(static == static[0])


def test_orbit_batch_keys_and_shapes():
    items = [OrbitDataset(num_views=5, size=SIZE, length=2)[i] for i in range(2)]
    batch = orbit_batch(items, cond_aug=(1e-5, 1e-2), generator=torch.Generator().manual_seed(0))
    assert batch["frames"].shape == (10, 3, SIZE, SIZE)
    assert torch.equal(batch["cond_frames_without_noise"], torch.stack([item["frames"][-1] for item in items]))
    assert batch["cond_frames"].shape == (2, 3, SIZE, SIZE)
    for key in ("cond_aug", "polars_rad", "azimuths_rad"):
        assert batch[key].shape == (10,) and batch[key].dtype == torch.float32, key
    assert torch.all(batch["azimuths_rad"].view(2, 5)[:, -1] == 0)
    assert torch.allclose(batch["polars_rad"], torch.deg2rad(90 - torch.cat([i["elevations_deg"] for i in items])))
    assert batch["num_video_frames"] == 5 and torch.equal(batch["image_only_indicator"], torch.zeros(2, 5))


def test_moving_object_items_and_batch_follow_sv4d2():
    dataset = MovingObjectDataset(num_frames=3, num_views=5, size=SIZE, length=2)
    item = dataset[0]
    assert item["frames"].shape == (3, 5, 3, SIZE, SIZE) and torch.equal(item["times"], torch.tensor([0, 0.5, 1]))
    relative = torch.remainder(item["azimuths_deg"] - item["azimuths_deg"][0], 360.0)
    assert torch.all(relative.diff() > 0), "views go round in order from the input camera"
    assert not torch.equal(item["frames"][0], item["frames"][-1]), "the object moves"
    assert item["shape"] in SHAPES

    items = [item, dataset[1]]
    batch = moving_object_batch(items)
    b, t, v = 2, 3, 4  # 4 novel views
    assert batch["frames"].shape == (b * t * v, 3, SIZE, SIZE)
    assert torch.equal(batch["frames"][v + 2], item["frames"][1, 3])  # (b t v): sample 0, time 1, novel view 2
    assert torch.equal(batch["cond_motion"], batch["cond_frames_without_noise"])
    assert torch.equal(batch["cond_motion"][:t], item["frames"][:, 0])
    assert torch.equal(batch["cond_frames"][v + 2], item["frames"][1, 0])
    assert torch.equal(batch["cond_view"][:v], item["frames"][0, 1:])
    cameras = sv4d2_camera_inputs(Trajectory(item["elevations_deg"], item["azimuths_deg"]), num_times=t)
    for key in ("polar_rad", "azimuth_rad"):
        assert batch[key].shape == (b * t * v,) and batch[key].dtype == torch.float32
        assert torch.allclose(batch[key][: t * v], cameras[key].float())
    assert batch["num_video_frames"] == t * v and torch.equal(batch["image_only_indicator"], torch.ones(b, t * v))


def test_moving_objects_are_framed_large_and_stay_in_view():
    """The moving-object world zooms in (MovingObjectDataset.FOV_DEG) so that the object fills the frame about as
    an orbit's still object does, and its whole motion still stays inside the frame."""
    framed = MovingObjectDataset(num_frames=3, num_views=5, size=SIZE, length=12)
    wide = MovingObjectDataset(num_frames=3, num_views=5, size=SIZE, length=12, fov_deg=40.0)
    assert framed.fov_deg < 40.0

    def object_pixels(dataset, index):  # t v h w, True where the object is
        return (dataset[index]["frames"] < 0.9).any(dim=-3)

    coverage = {name: torch.stack([object_pixels(dataset, i).float().mean() for i in range(12)]).mean()
                for name, dataset in (("framed", framed), ("wide", wide))}
    assert coverage["framed"] > 1.5 * coverage["wide"]
    for index in range(12):
        border = object_pixels(framed, index)[..., [0, -1], :].any() or object_pixels(framed, index)[..., [0, -1]].any()
        assert not border, f"item {index}: the object touches the frame's edge"
    with pytest.raises(ValueError, match="fov_deg must lie in"):
        MovingObjectDataset(fov_deg=180.0)


def test_video_items_and_batch_follow_svd():
    dataset = MotionVideoDataset(num_frames=4, size=SIZE, length=2)
    items = [dataset[0], dataset[1]]
    for item in items:
        assert item["frames"].shape == (4, 3, SIZE, SIZE)
        assert item["fps"] in (3, 6, 12) and item["fps_id"] == item["fps"] - 1 and item["shape"] in SHAPES
        assert item["motion_bucket_id"] == motion_bucket(measure_motion(item["frames"]))
    batch = video_batch(items, generator=torch.Generator().manual_seed(0))
    assert batch["frames"].shape == (8, 3, SIZE, SIZE)
    assert torch.equal(batch["cond_frames_without_noise"], torch.stack([item["frames"][0] for item in items]))
    assert torch.allclose(batch["cond_aug"], torch.full((8,), 0.02))
    assert torch.equal(batch["fps_id"], torch.tensor([float(items[0]["fps_id"])] * 4 + [float(items[1]["fps_id"])] * 4))
    assert batch["motion_bucket_id"].shape == (8,) and batch["motion_bucket_id"].dtype == torch.float32
    assert batch["num_video_frames"] == 4 and torch.equal(batch["image_only_indicator"], torch.zeros(2, 4))


# ------------------------------------------------------------------------------------------ motion labels


def test_faster_objects_measure_more_motion():
    obj = random_object(torch.Generator().manual_seed(2), scale_range=(0.4, 0.4))
    clips = [sliding_clip(obj, 10.0, 30.0, 40.0, speed, fps=6, num_frames=4, size=SIZE) for speed in (0, 0.2, 0.5, 1)]
    motions = torch.tensor([measure_motion(clip) for clip in clips])
    buckets = torch.tensor([motion_bucket(motion) for motion in motions.tolist()])
    assert motions[0] < 1e-6 and (motions.diff() > 0).all() and (buckets.diff() > 0).all()
    noisy = clips[2] + 0.03 * torch.randn(clips[2].shape, generator=torch.Generator().manual_seed(0))
    assert measure_motion(noisy) == pytest.approx(motions[2].item(), rel=0.2), "background noise barely counts"


def test_measure_motion_rejects_what_it_cannot_measure():
    with pytest.raises(ValueError, match="t >= 2 frames"):
        measure_motion(torch.zeros(1, 3, 8, 8))
    with pytest.raises(ValueError, match="blank"):
        measure_motion(torch.ones(2, 3, 8, 8))
    with pytest.raises(ValueError, match=">= 0"):
        motion_bucket(-1.0)
