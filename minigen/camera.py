"""Cameras of the multi-view models: one angle convention, orbits, validation and camera embeddings.

Taught in notebook 06. Corresponds to the camera handling of the reference's sampling scripts
(`scripts/sampling/simple_video_sample.py` for SV3D_p, `simple_video_sample_4d.py` for SV4D,
`simple_video_sample_4d2.py` for SV4D 2.0) and to the `polars_rad` / `azimuths_rad` (SV3D_p) and
`polar_rad` / `azimuth_rad` (SV4D, SV4D 2.0) ConcatTimestepEmbedderND embedders of their configs.

The convention, used everywhere in minigen (degrees in the public API, radians where networks want them):
- elevation: degrees above the object's horizontal plane, in [-90, 90]; 0 is eye level, 90 looks straight down.
- polar angle: measured from the up axis, polar = 90 - elevation, in [0, 180]; the networks take it in radians.
- azimuth: degrees around the up axis, in [0, 360], counter-clockwise seen from above, 0 on the +x axis.
  The networks take azimuths in radians *relative to the input view*: (azimuth - azimuth_input) % 360.
  In SV3D_p the input view is the last frame; SV4D / SV4D 2.0 re-express their views relative to view 0.
Conversions between degrees and radians are plain `torch.deg2rad` / `torch.rad2deg`.
"""

import functools
import math
from dataclasses import dataclass

import torch

from .embeddings import timestep_embedding

ELEVATION_RANGE = (-90.0, 90.0)
AZIMUTH_RANGE = (0.0, 360.0)
CAMERA_EMBEDDING_DIM = 512  # outdim of the polar and azimuth ConcatTimestepEmbedderND in the SV3D_p / SV4D configs
SV3D_NUM_FRAMES = 21  # an SV3D orbit: 20 novel views, then the input view
# SV4D keeps 9 of the 21 SV3D views of frame 0 (after moving the input view first): 1 input + 8 novel views
SV4D_SUBSAMPLED_VIEWS = (0, 2, 5, 7, 9, 12, 14, 16, 19)


# ---------------------------------------------------------------------------------------------- conventions


def as_angles(values, name: str = "angles") -> torch.Tensor:
    """Any number or sequence of numbers as a 1-D float64 tensor (a single number gives length 1)."""
    try:
        angles = torch.as_tensor(values, dtype=torch.float64)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{name} must be a number or a sequence of numbers, got {values!r}.") from error
    if angles.ndim > 1:
        raise ValueError(f"{name} must be a flat sequence (one value per frame), got shape {tuple(angles.shape)}.")
    return angles.reshape(-1)


def elevation_to_polar_rad(elevations_deg) -> torch.Tensor:
    """Polar angles in radians (what the networks take) of elevations in degrees: deg2rad(90 - elevation)."""
    return torch.deg2rad(90.0 - as_angles(elevations_deg, "elevations_deg"))


def polar_rad_to_elevation(polars_rad) -> torch.Tensor:
    """Elevations in degrees of polar angles in radians (the inverse of `elevation_to_polar_rad`)."""
    return 90.0 - torch.rad2deg(as_angles(polars_rad, "polars_rad"))


def relative_azimuths_deg(azimuths_deg, reference_index: int = -1) -> torch.Tensor:
    """Azimuths re-expressed relative to one frame's (the input view), wrapped into [0, 360)."""
    azimuths = as_angles(azimuths_deg, "azimuths_deg")
    return torch.remainder(azimuths - azimuths[reference_index], 360.0)


# ----------------------------------------------------------------------------------------------- validation


def _outside(values: torch.Tensor, low: float, high: float) -> list[str]:
    """'frame (value)' for every finite value outside [low, high]."""
    bad = torch.isfinite(values) & ((values < low) | (values > high))
    return [f"{i} ({values[i].item():g})" for i in torch.nonzero(bad).flatten().tolist()]


def _not_finite(values: torch.Tensor) -> list[str]:
    return [f"{i} ({values[i].item()})" for i in torch.nonzero(~torch.isfinite(values)).flatten().tolist()]


def azimuth_steps_deg(azimuths_deg) -> torch.Tensor:
    """How far each camera moves round the object from the previous frame, in [0, 360) degrees."""
    return torch.remainder(torch.diff(as_angles(azimuths_deg, "azimuths_deg")), 360.0)


def _sorting_problem(azimuths: torch.Tensor) -> str | None:
    """Why the azimuths are not one orbit (every step forward, wrapping past 360 at most once); None if they are."""
    steps = azimuth_steps_deg(azimuths)
    if (steps > 0).all() and steps.sum() < 360.0:
        return None
    falls = torch.nonzero(torch.diff(azimuths) <= 0).flatten().tolist()
    where = ", ".join(f"{i}->{i + 1} ({azimuths[i].item():g} -> {azimuths[i + 1].item():g})" for i in falls)
    where = where or "none, but the last camera comes back to the first"
    return (
        f"azimuths_deg are not sorted as one orbit: they fall or repeat at frames {where}; an orbit increases "
        "at every frame, wrapping past 360 at most once and never past its first camera."
    )


def validate_cameras(elevations_deg, azimuths_deg, num_frames: int, require_sorted: bool = False) -> None:
    """Check one camera per frame; raise ONE ValueError that lists every problem found. Nothing is clamped.

    `elevations_deg` may be a single number (every frame at that elevation), as in the scripts.
    With `require_sorted`, the azimuths must form one orbit: each frame a step forward in azimuth
    (wrapping past 360 at most once), as SV3D_p's script intends for its 21 views.
    """
    elevations = as_angles(elevations_deg, "elevations_deg")
    azimuths = as_angles(azimuths_deg, "azimuths_deg")
    if elevations.numel() == 1:
        elevations = elevations.expand(max(num_frames, 1))
    problems = []
    if num_frames < 1:
        problems.append(f"num_frames must be >= 1, got {num_frames}.")
    for name, values in (("elevations_deg", elevations), ("azimuths_deg", azimuths)):
        if values.numel() != num_frames:
            problems.append(f"{name} has {values.numel()} values; expected {num_frames}, one per frame.")
        if frames := _not_finite(values):
            problems.append(f"{name} are not finite at frames {', '.join(frames)}.")
    for name, values, (low, high) in (
        ("elevations_deg", elevations, ELEVATION_RANGE),
        ("azimuths_deg", azimuths, AZIMUTH_RANGE),
    ):
        if frames := _outside(values, low, high):
            problems.append(f"{name} outside [{low:g}, {high:g}] at frames {', '.join(frames)}.")
    if require_sorted and azimuths.numel() > 1 and torch.isfinite(azimuths).all():
        if problem := _sorting_problem(azimuths):
            problems.append(problem)
    if problems:
        raise ValueError(
            f"Invalid cameras ({len(problems)} problem{'s' * (len(problems) > 1)}):\n- " + "\n- ".join(problems)
            + "\nElevation is degrees above the horizon in [-90, 90] (polar = 90 - elevation); "
            "azimuth is degrees around the object in [0, 360]."
        )


# --------------------------------------------------------------------------------------------- trajectories


@dataclass(frozen=True)
class Trajectory:
    """One camera per frame, in degrees: a custom sequence, or what the orbit functions below build.

    Give numbers or sequences (lists, arrays, tensors; a single elevation is used for every frame); they are
    validated and stored as tuples of floats. Immutable, so two equal trajectories compare equal.
    """

    elevations_deg: tuple[float, ...]
    azimuths_deg: tuple[float, ...]
    name: str = "custom"

    def __post_init__(self):
        azimuths = as_angles(self.azimuths_deg, "azimuths_deg")
        elevations = as_angles(self.elevations_deg, "elevations_deg")
        if elevations.numel() == 1:
            elevations = elevations.expand(azimuths.numel())
        validate_cameras(elevations, azimuths, azimuths.numel())
        object.__setattr__(self, "elevations_deg", tuple(elevations.tolist()))
        object.__setattr__(self, "azimuths_deg", tuple(azimuths.tolist()))

    @property
    def num_frames(self) -> int:
        """Frames of the orbit: one camera per azimuth (a single elevation was spread over them all)."""
        return len(self.azimuths_deg)

    @property
    def polars_rad(self) -> torch.Tensor:
        """The elevations as polar angles from the up axis, in radians: what SV3D_p's camera embedding reads."""
        return elevation_to_polar_rad(self.elevations_deg)

    @property
    def relative_azimuths_rad(self) -> torch.Tensor:
        """Azimuths relative to the last frame (the input view), in radians: SV3D_p's convention."""
        return torch.deg2rad(relative_azimuths_deg(self.azimuths_deg))


def orbit_azimuths_deg(num_frames: int, azimuth_offset_deg: float = 0.0) -> torch.Tensor:
    """`num_frames` evenly spaced azimuths after the offset; the last one is the offset (the input view)."""
    if num_frames < 1:
        raise ValueError(f"An orbit needs num_frames >= 1, got {num_frames}.")
    steps = torch.linspace(0.0, 360.0, num_frames + 1, dtype=torch.float64)[1:]
    return torch.remainder(azimuth_offset_deg + steps, 360.0)


def static_orbit(num_frames: int = SV3D_NUM_FRAMES, elevation_deg: float = 10.0,
                 azimuth_offset_deg: float = 0.0) -> Trajectory:
    """A full turn round the object at one elevation (SV3D's "static orbit")."""
    return Trajectory(elevation_deg, orbit_azimuths_deg(num_frames, azimuth_offset_deg), "static orbit")


def dynamic_orbit(num_frames: int = SV3D_NUM_FRAMES, elevation_deg: float = 10.0, amplitude_deg: float = 10.0,
                  cycles: float = 1.0, azimuth_offset_deg: float = 0.0) -> Trajectory:
    """A full turn whose elevation swings sinusoidally round `elevation_deg` (SV3D's "dynamic orbit").

    The swing is `cycles` periods per turn and is 0 at the last frame, so the input view stays at `elevation_deg`.
    """
    turn_fraction = torch.arange(1, num_frames + 1, dtype=torch.float64) / num_frames
    elevations = elevation_deg + amplitude_deg * torch.sin(2 * math.pi * cycles * turn_fraction)
    return Trajectory(elevations, orbit_azimuths_deg(num_frames, azimuth_offset_deg), "dynamic orbit")


# Script defaults. SV3D_p and SV4D: a 21-view static orbit at 10 degrees (SV4D runs SV3D on it, then keeps
# SV4D_SUBSAMPLED_VIEWS). SV4D 2.0: the input view and 4 (8 for sv4d2_8views) novel views at elevation 0.
DEFAULT_TRAJECTORIES = {
    "sv3d_p": lambda: static_orbit(SV3D_NUM_FRAMES, 10.0),
    "sv4d": lambda: static_orbit(SV3D_NUM_FRAMES, 10.0),
    "sv4d2": lambda: Trajectory(0.0, (0, 60, 120, 180, 240), "sv4d2 views"),
    "sv4d2_8views": lambda: Trajectory(0.0, (0, 30, 75, 120, 165, 210, 255, 300, 330), "sv4d2_8views views"),
}


def default_trajectory(model: str) -> Trajectory:
    """The cameras the reference sampling script uses when given no elevations / azimuths."""
    if model not in DEFAULT_TRAJECTORIES:
        raise ValueError(f"No default cameras for {model!r}; expected one of {sorted(DEFAULT_TRAJECTORIES)}.")
    return DEFAULT_TRAJECTORIES[model]()


# ------------------------------------------------------------------------------------- inputs of the networks


def sv3d_p_camera_inputs(trajectory: Trajectory, require_sorted: bool = True) -> dict[str, torch.Tensor]:
    """The SV3D_p conditioner's camera inputs: per frame polar and azimuth (relative to the last frame), radians.

    The reference script tries to sort the 20 novel-view azimuths but sorts a copy (a no-op), so minigen
    checks the order instead (`require_sorted=False` sends any order, as the script really does).
    """
    validate_cameras(trajectory.elevations_deg, trajectory.azimuths_deg, SV3D_NUM_FRAMES, require_sorted)
    return {"polars_rad": trajectory.polars_rad, "azimuths_rad": trajectory.relative_azimuths_rad}


def _per_time_frame(polars_rad: torch.Tensor, azimuths_rad: torch.Tensor, num_times: int) -> dict[str, torch.Tensor]:
    """The novel views' angles repeated for every time frame: SV4D frames are ordered (t v)."""
    return {"polar_rad": polars_rad.repeat(num_times), "azimuth_rad": azimuths_rad.repeat(num_times)}


def sv4d_subsampled_views(num_sv3d_views: int = SV3D_NUM_FRAMES, num_views: int = 8) -> tuple[int, ...]:
    """The SV3D views SV4D keeps: view 0 (the input view, once the orbit is rolled) and `num_views` more spread
    evenly round the orbit, round(linspace(0, num_sv3d_views, num_views + 2)[:-1]); SV4D_SUBSAMPLED_VIEWS for the
    script's 21 and 8."""
    if not 1 <= num_views < num_sv3d_views:
        raise ValueError(f"SV4D keeps num_views of the SV3D orbit's other views: 1 <= num_views < {num_sv3d_views}, "
                         f"got {num_views}.")
    spread = torch.linspace(0.0, num_sv3d_views, num_views + 2, dtype=torch.float64)[:-1]
    return tuple(int(view) for view in spread.round().tolist())


def sv4d_camera_inputs(trajectory: Trajectory, num_times: int = 5, num_views: int = 8) -> dict[str, torch.Tensor]:
    """SV4D's camera inputs, `num_times x num_views` frames, from the SV3D orbit of its first stage (21 views).

    The script keeps views sv4d_subsampled_views(...)[1:] (SV4D_SUBSAMPLED_VIEWS[1:]) and subtracts frame 0's
    relative azimuth. SV3D's output is rolled by one so that the input view comes first; for an evenly spaced
    orbit the subtraction gives exactly the azimuth of the view shown (for an uneven orbit the script is off by
    the gap between frames 0 and 1). The polar angles are absolute, unlike SV4D 2.0's.
    """
    novel_views = list(sv4d_subsampled_views(trajectory.num_frames, num_views)[1:])
    azimuths_rad = trajectory.relative_azimuths_rad
    return _per_time_frame(
        trajectory.polars_rad[novel_views],
        torch.remainder(azimuths_rad[novel_views] - azimuths_rad[0], 2 * math.pi),
        num_times,
    )


def sv4d2_camera_inputs(trajectory: Trajectory, num_times: int = 12) -> dict[str, torch.Tensor]:
    """SV4D 2.0's camera inputs, `num_times x V` frames, from the input view (frame 0) and V novel views.

    Unlike SV4D, the polar angles are relative too: the input view's polar is subtracted and 90 degrees added,
    so elevations given relative to the input view (the script's default 0) read as eye level.
    """
    if trajectory.num_frames < 2:
        raise ValueError("SV4D 2.0 needs the input view (frame 0) and at least one novel view.")
    polars_rad = trajectory.polars_rad
    azimuths_rad = trajectory.relative_azimuths_rad
    return _per_time_frame(
        torch.remainder(polars_rad[1:] - polars_rad[0] + math.pi / 2, 2 * math.pi),
        torch.remainder(azimuths_rad[1:] - azimuths_rad[0], 2 * math.pi),
        num_times,
    )


CAMERA_INPUTS = {  # model -> function(trajectory) giving the conditioner's camera inputs
    "sv3d_p": sv3d_p_camera_inputs,
    "sv4d": sv4d_camera_inputs,
    "sv4d2": sv4d2_camera_inputs,
    "sv4d2_8views": functools.partial(sv4d2_camera_inputs, num_times=5),
}


def camera_inputs(model: str, trajectory: Trajectory | None = None) -> dict[str, torch.Tensor]:
    """What `model`'s conditioner receives for `trajectory` (default: the script's default cameras)."""
    if model not in CAMERA_INPUTS:
        raise ValueError(f"No camera inputs for {model!r}; expected one of {sorted(CAMERA_INPUTS)}.")
    return CAMERA_INPUTS[model](trajectory if trajectory is not None else default_trajectory(model))


# ---------------------------------------------------------------------------------------- camera embeddings

CAMERA_EMBEDDING_CACHE_SIZE = 8  # trajectories kept; a sampling run needs one, a widget session a few


@functools.lru_cache(maxsize=CAMERA_EMBEDDING_CACHE_SIZE)
def _cached_camera_embedding(polars_rad: tuple[float, ...], azimuths_rad: tuple[float, ...], dim: int) -> torch.Tensor:
    polar_embedding = timestep_embedding(torch.tensor(polars_rad, dtype=torch.float64), dim)  # t dim
    azimuth_embedding = timestep_embedding(torch.tensor(azimuths_rad, dtype=torch.float64), dim)  # t dim
    return torch.cat([polar_embedding, azimuth_embedding], dim=1)  # t (2 dim)


def camera_embedding(polars_rad, azimuths_rad, dim: int = CAMERA_EMBEDDING_DIM) -> torch.Tensor:
    """Sinusoidal embeddings of the per-frame polar and azimuth angles (radians), concatenated: `t (2 dim)`.

    This is what the polar and azimuth ConcatTimestepEmbedderND (outdim 512) add to the conditioner's
    "vector" for each frame. A trajectory is embedded once, not once per sampling step: results are cached
    by the exact angle values (the last CAMERA_EMBEDDING_CACHE_SIZE sequences; a float32 copy of the angles
    is another key), so the same angles return the very same tensor. Treat it as read-only.
    """
    polars = as_angles(polars_rad, "polars_rad")
    azimuths = as_angles(azimuths_rad, "azimuths_rad")
    if polars.shape != azimuths.shape:
        raise ValueError(f"Need one polar per azimuth; got {polars.numel()} polars and {azimuths.numel()} azimuths.")
    return _cached_camera_embedding(tuple(polars.tolist()), tuple(azimuths.tolist()), dim)


def camera_embedding_cache_info():
    """Hits, misses and size of the camera-embedding cache (functools' CacheInfo)."""
    return _cached_camera_embedding.cache_info()


def clear_camera_embedding_cache() -> None:
    """Forget the cached camera embeddings, so that the cache's counts (camera_embedding_cache_info) start from
    nothing, as notebook 06 and the tests need to show them."""
    _cached_camera_embedding.cache_clear()


# ------------------------------------------------------------------------------------------ camera geometry


def camera_positions(elevations_deg, azimuths_deg, radius: float = 2.0) -> torch.Tensor:
    """Camera centres on a sphere round the object at the origin, z up: `t 3`."""
    elevations = torch.deg2rad(as_angles(elevations_deg, "elevations_deg"))
    azimuths = torch.deg2rad(as_angles(azimuths_deg, "azimuths_deg"))
    return radius * torch.stack(
        [elevations.cos() * azimuths.cos(), elevations.cos() * azimuths.sin(), elevations.sin()], dim=-1
    )


def look_at(positions: torch.Tensor, target=(0.0, 0.0, 0.0), up=(0.0, 0.0, 1.0)) -> torch.Tensor:
    """Camera-to-world matrices `t 4 4` of cameras at `positions` looking at `target`.

    OpenGL convention: the camera's x axis points right, y up and it looks along its -z axis. A camera
    straight above or below the target (looking along `up`) uses the world y axis as its up instead.
    """
    positions = torch.as_tensor(positions, dtype=torch.float64).reshape(-1, 3)
    target = torch.as_tensor(target, dtype=torch.float64)
    backward = torch.nn.functional.normalize(positions - target, dim=-1)  # t 3: camera +z, away from the target
    world_up = torch.as_tensor(up, dtype=torch.float64).expand_as(backward).clone()
    at_pole = torch.linalg.cross(world_up, backward).norm(dim=-1) < 1e-9
    world_up[at_pole] = torch.tensor([0.0, 1.0, 0.0], dtype=torch.float64)
    right = torch.nn.functional.normalize(torch.linalg.cross(world_up, backward), dim=-1)
    camera_up = torch.linalg.cross(backward, right)
    matrices = torch.eye(4, dtype=torch.float64).repeat(len(positions), 1, 1)
    matrices[:, :3, :3] = torch.stack([right, camera_up, backward], dim=-1)  # columns: the camera axes
    matrices[:, :3, 3] = positions
    return matrices
