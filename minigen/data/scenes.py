"""Scenes: a tiny ray-casting renderer with exact cameras, and three datasets of painted objects on white.

The video models learn from objects seen from known cameras (SV3D_p, SV4D 2.0) or moving at a known speed
(SVD). The reference trains on renders of Objaverse; the course renders its own: a sphere, box, cylinder or
torus, painted asymmetrically (six face colours, stripes and a marked pole) so that every view tells where
the camera is, shaded by one light and composited on white as the official models expect. Cameras use
minigen.camera's convention exactly (`camera_positions`, `look_at`), so a sample's angles are the truth.
Every item is a pure function of (dataset seed, index). The batch builders give the keys the official
conditioners read (`orbit_batch`: SV3D_p, `video_batch`: SVD, `moving_object_batch`: SV4D 2.0).
"""

import functools
import hashlib
import math
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from einops import rearrange, repeat

from ..camera import (
    Trajectory,
    as_angles,
    camera_positions,
    dynamic_orbit,
    elevation_to_polar_rad,
    look_at,
    relative_azimuths_deg,
    sv4d2_camera_inputs,
)
from .shapes import hue_to_rgb


def float32(function):
    """Run `function` with CPU autocast off: the geometry stays exact float32 even when the caller (a training
    step, a sample grid) runs under bf16 autocast."""
    @functools.wraps(function)
    def exact(*args, **kwargs):
        with torch.autocast("cpu", enabled=False):
            return function(*args, **kwargs)
    return exact


SHAPES = ("sphere", "box", "cylinder", "torus")

RADIUS = 3.0  # camera distance to the origin: an object of bounding radius 0.8 fills 76% of the frame height
FOV_DEG = 40.0  # vertical field of view
MIN_SIZE = 8  # smallest image side, in pixels
SUPERSAMPLING = 2  # rays per pixel side: images are rendered 2x larger and average-pooled (anti-aliasing)

# The primitives in object space, each with bounding radius 1 (an object's `scale` is its bounding radius).
BOX_HALF_SIZES = (0.707, 0.566, 0.424)  # half sides (5 : 4 : 3), half-diagonal 1
CYLINDER_RADIUS, CYLINDER_HALF_HEIGHT = 0.6, 0.8  # axis along z, capped; 0.6^2 + 0.8^2 = 1
TORUS_RADII = (0.7, 0.3)  # ring radius and tube radius round the z axis; 0.7 + 0.3 = 1
TORUS_STEPS = 40  # sphere-tracing steps of the torus (the only primitive without a closed-form hit)
POLE_POINTS = {  # the marked point on each primitive: its top (+z), on the torus's ring at +x
    "sphere": (0.0, 0.0, 1.0),
    "box": (0.0, 0.0, BOX_HALF_SIZES[2]),
    "cylinder": (0.0, 0.0, CYLINDER_HALF_HEIGHT),
    "torus": (TORUS_RADII[0], 0.0, TORUS_RADII[1]),
}
POLE_RADIUS = 0.25  # object units: the pole dot is every surface point this close to the pole point
STRIPE_STRENGTH = 0.7  # how far a stripe blends a face colour towards the stripe colour

LIGHT_DIRECTION = (0.4, 0.2, 1.0)  # towards the light, world space: from above, a little to +x
AMBIENT = 0.45  # the light every surface gets; the directional light adds up to 1 - AMBIENT
SCALE_RANGE = (0.6, 0.8)  # bounding radii of random objects


# ------------------------------------------------------------------------------------------------ objects


@dataclass
class SceneObject:
    """One painted primitive and its pose. A surface point p (object space) sits in the world at
    `position + scale * rotation @ (stretch * p)`, stretch = (1/sqrt(squash), 1/sqrt(squash), squash):
    squash < 1 flattens the object along its own z axis, > 1 stretches it, keeping its volume."""

    shape: str  # one of SHAPES
    colours: torch.Tensor  # 6 3 in [0, 1]: faces +x, -x, +y, -y, +z, -z (by the normal's dominant axis)
    stripe_colour: torch.Tensor  # 3: the colour the stripes blend towards
    stripe_axis: int  # 0, 1 or 2: the object axis the stripes run across
    stripe_frequency: float  # stripes per object unit along that axis
    pole_colour: torch.Tensor  # 3: the unshaded dot round POLE_POINTS[shape]
    scale: float  # bounding radius before squashing
    rotation: torch.Tensor  # 3 3, object to world
    position: torch.Tensor  # 3, world
    squash: float = 1.0  # stretch factor along the object's z axis

    def __post_init__(self):
        if self.shape not in SHAPES:
            raise ValueError(f"shape must be one of {SHAPES}, got {self.shape!r}.")
        if not (self.scale > 0 and self.squash > 0):
            raise ValueError(f"scale and squash must be positive, got scale={self.scale}, squash={self.squash}.")
        if self.stripe_axis not in (0, 1, 2):
            raise ValueError(f"stripe_axis must be 0, 1 or 2 (an object axis), got {self.stripe_axis}.")
        shapes = {"colours": (6, 3), "stripe_colour": (3,), "pole_colour": (3,), "rotation": (3, 3), "position": (3,)}
        for name, shape in shapes.items():
            if tuple(getattr(self, name).shape) != shape:
                raise ValueError(f"{name} must have shape {shape}, got {tuple(getattr(self, name).shape)}.")

    @property
    def stretch(self) -> torch.Tensor:
        """3: the squash as a per-axis factor in object space (volume preserving)."""
        side = 1.0 / math.sqrt(self.squash)
        return torch.tensor([side, side, self.squash])

    @property
    def bounding_radius(self) -> float:
        """Distance from the world origin that the whole object stays within."""
        return self.position.norm().item() + self.scale * max(self.squash, 1.0 / math.sqrt(self.squash))

    def to_world(self, points: torch.Tensor) -> torch.Tensor:
        """Object-space points `p 3` -> world points `p 3`."""
        return self.position + self.scale * (points * self.stretch) @ self.rotation.T

    def to_object(self, origins: torch.Tensor, directions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """World rays `3 r` -> the same rays in object space; a ray's parameter t means the same point in both."""
        inverse = self.rotation.T / (self.scale * self.stretch[:, None])  # 3 3: stretch^-1 R^T / scale
        return inverse @ (origins - self.position[:, None]), inverse @ directions

    def pole_position(self) -> torch.Tensor:
        """3: where the pole dot's centre is in the world."""
        return self.to_world(torch.tensor([POLE_POINTS[self.shape]]))[0]


def random_rotation(generator: torch.Generator) -> torch.Tensor:
    """A uniformly random rotation `3 3`, from a random unit quaternion (w, x, y, z)."""
    w, x, y, z = F.normalize(torch.randn(4, generator=generator), dim=0).tolist()
    return torch.tensor([
        [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
        [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
        [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
    ])


def rotation_about_z(angle_rad: float) -> torch.Tensor:
    """`3 3`: a rotation by `angle_rad` about the z axis, counter-clockwise seen from +z."""
    c, s = math.cos(angle_rad), math.sin(angle_rad)
    return torch.tensor([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def uniform(generator: torch.Generator, low: float, high: float) -> float:
    """One number drawn uniformly from [low, high)."""
    return low + (high - low) * torch.rand((), generator=generator, dtype=torch.float64).item()


def random_colours(generator: torch.Generator, n: int, bright: bool = False) -> torch.Tensor:
    """`n 3` colours in [0, 1] of random hue: saturation at least 0.45 and value 0.5 .. 0.9, so never near white;
    or fully saturated at full value (`bright`, for the pole)."""
    hue, saturation, value = torch.rand(3, n, generator=generator)
    if bright:
        return hue_to_rgb(hue, torch.ones(n), torch.ones(n))
    return hue_to_rgb(hue, 0.45 + 0.55 * saturation, 0.5 + 0.4 * value)


@float32
def random_object(generator: torch.Generator, shapes=SHAPES, scale_range=SCALE_RANGE) -> SceneObject:
    """A random shape of `shapes` with random paint and rotation, centred, bounding radius in `scale_range`."""
    if not shapes or any(shape not in SHAPES for shape in shapes):
        raise ValueError(f"shapes must be a non-empty selection of {SHAPES}, got {shapes!r}.")
    if not 0 < scale_range[0] <= scale_range[1]:
        raise ValueError(f"scale_range must be (low, high) with 0 < low <= high, got {scale_range}.")
    shape = shapes[torch.randint(len(shapes), (), generator=generator).item()]
    return SceneObject(
        shape=shape,
        colours=random_colours(generator, 6),
        stripe_colour=random_colours(generator, 1)[0],
        stripe_axis=torch.randint(3, (), generator=generator).item(),
        stripe_frequency=uniform(generator, 1.5, 3.0),
        pole_colour=random_colours(generator, 1, bright=True)[0],
        scale=uniform(generator, *scale_range),
        rotation=random_rotation(generator),
        position=torch.zeros(3),
    )


# ------------------------------------------------------------------------------------------------ cameras


def check_cameras(elevations_deg, azimuths_deg, radius: float, fov_deg: float, size: int,
                  bounding_radius: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """The angles as `n` tensors (a single elevation serves every view); ONE ValueError lists every problem."""
    elevations = as_angles(elevations_deg, "elevations_deg")
    azimuths = as_angles(azimuths_deg, "azimuths_deg")
    if elevations.numel() == 1:
        elevations = elevations.expand(azimuths.numel())
    problems = []
    if elevations.numel() != azimuths.numel() or azimuths.numel() == 0:
        problems.append(f"got {elevations.numel()} elevations and {azimuths.numel()} azimuths; give one of each "
                        "per view (or a single elevation for all views).")
    for name, values in (("elevations_deg", elevations), ("azimuths_deg", azimuths)):
        if not torch.isfinite(values).all():
            problems.append(f"{name} must be finite, got {values.tolist()}.")
    if (elevations.abs() > 90).any():
        problems.append(f"elevations_deg must lie in [-90, 90] (90 looks straight down), got {elevations.tolist()}.")
    if not math.isfinite(radius) or radius <= bounding_radius:
        problems.append(f"radius={radius} puts the camera inside the scene (bounding radius {bounding_radius:.3g}); "
                        "use a larger radius.")
    if not 0 < fov_deg < 180:
        problems.append(f"fov_deg must lie in (0, 180) degrees, got {fov_deg}.")
    if size < MIN_SIZE:
        problems.append(f"size must be at least {MIN_SIZE} pixels, got {size}.")
    if problems:
        raise ValueError("Impossible cameras:\n- " + "\n- ".join(problems))
    return elevations, azimuths


def cameras(elevations_deg: torch.Tensor, azimuths_deg: torch.Tensor, radius: float) -> torch.Tensor:
    """Camera-to-world matrices `n 4 4` (float32) of cameras on the sphere of `radius`, looking at the origin."""
    return look_at(camera_positions(elevations_deg, azimuths_deg, radius)).float()


def pixel_directions(fov_deg: float, size: int) -> torch.Tensor:
    """Camera-space directions `(h w) 3` through the pixel centres, row 0 at the top; z = -1 (looking along -z)."""
    half_width = math.tan(math.radians(fov_deg) / 2)  # of the image plane at distance 1 (square: half height too)
    centres = (torch.arange(size) + 0.5) / size * 2 - 1  # -1 .. 1, left to right / top to bottom
    y, x = torch.meshgrid(-centres * half_width, centres * half_width, indexing="ij")  # camera y points up
    return torch.stack([x, y, -torch.ones_like(x)], dim=-1).reshape(-1, 3)


def project(points, elevations_deg, azimuths_deg, *, radius: float = RADIUS, fov_deg: float = FOV_DEG,
            size: int = 64) -> torch.Tensor:
    """Where world points `p 3` land in each view: `n p 2` pixel coordinates (x = column, y = row).

    Pixel (row i, column j) has its centre at (x, y) = (j, i), so `round()` gives the pixel; the image centre is
    at ((size - 1) / 2, (size - 1) / 2). The maths is `render`'s ray generation run backwards.
    """
    elevations, azimuths = check_cameras(elevations_deg, azimuths_deg, radius, fov_deg, size)
    matrices = cameras(elevations, azimuths, radius)  # n 4 4
    points = torch.as_tensor(points, dtype=torch.float32).reshape(-1, 3)
    relative = points[None] - matrices[:, None, :3, 3]  # n p 3
    in_camera = torch.einsum("npi,nij->npj", relative, matrices[:, :3, :3])  # n p 3: R^T (p - c)
    depth = -in_camera[..., 2]
    if (depth <= 0).any():
        raise ValueError("Some points are at or behind a camera's plane and cannot be projected; "
                         "move them nearer the origin or the cameras further away.")
    half_width = math.tan(math.radians(fov_deg) / 2)
    x = in_camera[..., 0] / depth / half_width  # n p, -1 (left edge) .. 1 (right edge)
    y = in_camera[..., 1] / depth / half_width  # n p, -1 (bottom) .. 1 (top)
    return torch.stack([(x + 1) / 2 * size - 0.5, (1 - y) / 2 * size - 0.5], dim=-1)


# ----------------------------------------------------------------------------------------- intersections
# Rays are stored component-major, `3 r` (rows x, y, z): on a CPU the per-ray dot products and 3 x 3 products
# run ten times faster than on `r 3`. Each hit function takes rays in object space (origins and directions
# `3 r`, directions not normalised) and returns the ray parameter t of the first hit (`r`, inf where the ray
# misses) and the outward object-space normal there (`3 r`).


def dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-ray dot products of `3 r` vectors: `r`."""
    return (a * b).sum(0)


def normalize(vectors: torch.Tensor) -> torch.Tensor:
    """`3 r` vectors scaled to length 1 (written out: torch's norm over dim 0 is fifty times slower)."""
    return vectors / dot(vectors, vectors).sqrt()


def hit_sphere(origins: torch.Tensor, directions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The unit sphere: the smaller root of |o + t d|^2 = 1."""
    a, b, c = dot(directions, directions), dot(origins, directions), dot(origins, origins) - 1
    discriminant = b * b - a * c
    t = (-b - discriminant.clamp(min=0).sqrt()) / a
    t = torch.where((discriminant >= 0) & (t > 0), t, torch.inf)
    return t, origins + t.nan_to_num(posinf=0.0) * directions


def hit_box(origins: torch.Tensor, directions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The box of BOX_HALF_SIZES, by slabs: the ray is inside once it has entered all three pairs of planes."""
    half = torch.tensor(BOX_HALF_SIZES)[:, None]
    directions = torch.where(directions == 0, 1e-20, directions)  # a ray parallel to a slab never enters it
    sign = directions.sign()
    near = (-half * sign - origins) / directions  # 3 r: where the ray enters each slab
    far = (half * sign - origins) / directions  # 3 r: where it leaves it
    t_in, axis = near.max(dim=0)
    t = torch.where((t_in <= far.amin(dim=0)) & (t_in > 0), t_in, torch.inf)
    return t, -F.one_hot(axis, 3).T * sign  # the face entered last faces against the ray


def hit_cylinder(origins: torch.Tensor, directions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The capped cylinder round z: the nearest of the side (within the height) and the caps (within the radius)."""
    radius, half_height = CYLINDER_RADIUS, CYLINDER_HALF_HEIGHT
    directions = torch.where(directions == 0, 1e-20, directions)  # a ray parallel to the caps never meets them
    o, d = origins[:2], directions[:2]  # 2 r: the side is a circle in the xy plane
    a, b = dot(d, d), dot(o, d)
    discriminant = b * b - a * (dot(o, o) - radius**2)
    t_side = (-b - discriminant.clamp(min=0).sqrt()) / a
    z_side = origins[2] + t_side * directions[2]
    t_side = torch.where((discriminant >= 0) & (t_side > 0) & (z_side.abs() <= half_height), t_side, torch.inf)
    cap_z = -half_height * directions[2].sign()  # r: the cap facing the ray
    t_cap = (cap_z - origins[2]) / directions[2]
    xy_cap = o + t_cap * d
    t_cap = torch.where((dot(xy_cap, xy_cap) <= radius**2) & (t_cap > 0), t_cap, torch.inf)
    side_normals = F.pad((o + t_side.nan_to_num(posinf=0.0) * d) / radius, (0, 0, 0, 1))  # 3 r, z = 0
    cap_normals = F.pad(cap_z[None] / half_height, (0, 0, 2, 0))  # 3 r, (0, 0, +-1)
    return torch.minimum(t_side, t_cap), torch.where(t_side <= t_cap, side_normals, cap_normals)


def torus_distance(points: torch.Tensor) -> torch.Tensor:
    """Signed distance `r` from object-space points `3 r` to the torus of TORUS_RADII round the z axis."""
    ring, tube = TORUS_RADII
    return torch.hypot(torch.hypot(points[0], points[1]) - ring, points[2]) - tube


def hit_torus(origins: torch.Tensor, directions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The torus, by sphere tracing: from where the ray enters the unit sphere, step by the distance to the
    surface TORUS_STEPS times; rays that end on the surface hit it. The normal is the distance's gradient."""
    length = dot(directions, directions).sqrt()
    unit = directions / length  # 3 r: steps along it are distances
    t, points = hit_sphere(origins, unit)
    t, points = t.nan_to_num(posinf=0.0), points  # rays that miss the sphere march from their origin, and miss
    for _ in range(TORUS_STEPS):
        distance = torus_distance(points)
        t, points = t + distance, points + distance * unit
    t = torch.where(torus_distance(points).abs() < 1e-3, t, torch.inf)
    ring_points = TORUS_RADII[0] * F.pad(points[:2] / torch.hypot(points[0], points[1]), (0, 0, 0, 1))  # 3 r
    return t / length, normalize(points - ring_points)  # from the nearest point of the ring


HIT = {"sphere": hit_sphere, "box": hit_box, "cylinder": hit_cylinder, "torus": hit_torus}


# ----------------------------------------------------------------------------------------------- rendering


def paint(obj: SceneObject, points: torch.Tensor, normals: torch.Tensor) -> torch.Tensor:
    """Surface colours `3 r` at object-space points and normals `3 r`, before shading: the face colour of the
    normal's dominant axis, blended towards the stripe colour in sinusoidal bands along `stripe_axis`."""
    axis = normals.abs().max(dim=0).indices  # r (max's indices: argmax over dim 0 is ten times slower)
    negative = normals.gather(0, axis[None])[0] < 0
    colours = obj.colours[2 * axis + negative.long()].T  # 3 r
    band = torch.sigmoid(8 * torch.sin(2 * math.pi * obj.stripe_frequency * points[obj.stripe_axis]))  # r
    mix = STRIPE_STRENGTH * band
    return (1 - mix) * colours + mix * obj.stripe_colour[:, None]


def shade(obj: SceneObject, points: torch.Tensor, normals: torch.Tensor) -> torch.Tensor:
    """Final colours `3 r` in [0, 1]: painted colours lit by ambient + Lambert light, and the unlit pole dot."""
    world_normals = normalize(obj.rotation @ (normals / obj.stretch[:, None]))  # normals take R stretch^-1
    light = F.normalize(torch.tensor(LIGHT_DIRECTION), dim=0)
    brightness = AMBIENT + (1 - AMBIENT) * (light @ world_normals).clamp(min=0)  # r
    colours = paint(obj, points, normals) * brightness
    from_pole = points - torch.tensor(POLE_POINTS[obj.shape])[:, None]
    on_pole = dot(from_pole, from_pole) < POLE_RADIUS**2
    return torch.where(on_pole, obj.pole_colour[:, None], colours)


def meets_unit_sphere(origins: torch.Tensor, directions: torch.Tensor) -> torch.Tensor:
    """`r` booleans: which object-space rays `3 r` pass through the unit sphere, which bounds every primitive."""
    b = dot(origins, directions)
    return (b < 0) & (b * b >= dot(directions, directions) * (dot(origins, origins) - 1))


def trace(objects: list[SceneObject], origins: torch.Tensor, directions: torch.Tensor) -> torch.Tensor:
    """Colours `3 r` in [0, 1] of world rays `3 r`: the nearest object's shaded surface, or white.
    Only the rays that pass through an object's bounding sphere are intersected with it (a third of a frame)."""
    colours = torch.ones_like(directions)
    depth = torch.full(directions.shape[1:], torch.inf)
    for obj in objects:
        object_origins, object_directions = obj.to_object(origins, directions)
        candidates = torch.nonzero(meets_unit_sphere(object_origins, object_directions))[:, 0]
        t, normals = HIT[obj.shape](object_origins.index_select(1, candidates),
                                    object_directions.index_select(1, candidates))
        nearer = t < depth[candidates]
        rays = candidates[nearer]
        points = object_origins.index_select(1, rays) + t[nearer] * object_directions.index_select(1, rays)
        colours[:, rays] = shade(obj, points, normals[:, nearer])
        depth[rays] = t[nearer]
    return colours


@float32
def render(obj: SceneObject | list[SceneObject], elevations_deg, azimuths_deg, *, radius: float = RADIUS,
           fov_deg: float = FOV_DEG, size: int = 64) -> torch.Tensor:
    """Images `n 3 size size` in [-1, 1] (float32) of the object(s) seen from n cameras on a sphere of `radius`
    round the origin (minigen.camera's convention), on white. One ray per sub-pixel, SUPERSAMPLING^2 per pixel."""
    objects = obj if isinstance(obj, list) else [obj]
    bounding_radius = max(o.bounding_radius for o in objects)
    elevations, azimuths = check_cameras(elevations_deg, azimuths_deg, radius, fov_deg, size, bounding_radius)
    matrices = cameras(elevations, azimuths, radius)  # n 4 4
    fine = size * SUPERSAMPLING
    directions = torch.einsum("nij,pj->inp", matrices[:, :3, :3], pixel_directions(fov_deg, fine))  # 3 n (h w)
    origins = matrices[:, :3, 3].T[:, :, None].expand_as(directions)
    colours = trace(objects, origins.reshape(3, -1), directions.reshape(3, -1))  # 3 (n h w)
    images = rearrange(colours, "c (n h w) -> n c h w", n=len(matrices), h=fine)
    return F.avg_pool2d(images, SUPERSAMPLING) * 2 - 1


# ----------------------------------------------------------------------------------------------- datasets


def sample_seed(seed: int, index: int) -> int:
    """The seed of item `index` of a dataset with `seed`: a hash of both, so an item never depends on which
    items were read before it, and datasets with different seeds (held-out objects) share no items."""
    digest = hashlib.sha256(f"minigen.scenes/{seed}/{index}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1  # 63 bits: what torch.Generator.manual_seed takes


def check_range(name: str, value_range, low: float = -90.0, high: float = 90.0) -> tuple[float, float]:
    """`value_range` as (low, high) floats inside [low, high]; a ValueError says what was expected otherwise."""
    if len(value_range) != 2 or not low <= value_range[0] <= value_range[1] <= high:
        raise ValueError(f"{name} must be (low, high) with {low:g} <= low <= high <= {high:g}, got {value_range}.")
    return float(value_range[0]), float(value_range[1])


class SceneDataset(torch.utils.data.Dataset):
    """What the three datasets share: `length` items, item i drawn from a generator seeded by (seed, i)."""

    def __init__(self, size: int, length: int, seed: int):
        if size < MIN_SIZE or length < 1:
            raise ValueError(f"Need size >= {MIN_SIZE} pixels and length >= 1 items; got size={size}, "
                             f"length={length}.")
        self.size, self.length, self.seed = size, length, seed

    def __len__(self) -> int:
        return self.length

    def generator(self, index: int) -> tuple[torch.Generator, int]:
        """The generator of item `index` and its seed (the item's `object_seed`)."""
        if not 0 <= index < self.length:
            raise IndexError(f"Index {index} is outside this dataset of {self.length} items.")
        object_seed = sample_seed(self.seed, index)
        return torch.Generator().manual_seed(object_seed), object_seed


class OrbitDataset(SceneDataset):
    """SV3D_p's layout: `num_views` views of one still object round a full orbit, the input view LAST.

    Azimuths are `orbit_azimuths_deg(num_views, offset)` for a random offset in [0, 360): the last view is at the
    offset. Elevations: a random base elevation and, if `dynamic`, a sinusoidal swing of random amplitude (up to
    MAX_SWING_DEG, one or two cycles per turn, 0 at the last view) as `minigen.camera.dynamic_orbit`; base and
    amplitude are drawn so that every view lies inside `elevation_range`.
    """

    MAX_SWING_DEG = 10.0

    def __init__(self, num_views: int = 21, size: int = 64, length: int = 1000, seed: int = 0,
                 elevation_range=(-10.0, 30.0), dynamic: bool = True):
        super().__init__(size, length, seed)
        if num_views < 1:
            raise ValueError(f"num_views must be >= 1, got {num_views}.")
        self.num_views, self.dynamic = num_views, dynamic
        self.elevation_range = check_range("elevation_range", elevation_range)

    def trajectory(self, generator: torch.Generator) -> Trajectory:
        low, high = self.elevation_range
        amplitude = uniform(generator, 0.0, min(self.MAX_SWING_DEG, (high - low) / 2)) if self.dynamic else 0.0
        cycles = torch.randint(1, 3, (), generator=generator).item()
        return dynamic_orbit(self.num_views, uniform(generator, low + amplitude, high - amplitude), amplitude,
                             cycles, uniform(generator, 0.0, 360.0))

    @float32
    def __getitem__(self, index: int) -> dict:
        generator, object_seed = self.generator(index)
        obj = random_object(generator)
        trajectory = self.trajectory(generator)
        return {
            "frames": render(obj, trajectory.elevations_deg, trajectory.azimuths_deg, size=self.size),  # v 3 h w
            "elevations_deg": torch.tensor(trajectory.elevations_deg, dtype=torch.float32),  # v
            "azimuths_deg": torch.tensor(trajectory.azimuths_deg, dtype=torch.float32),  # v, absolute
            "object_seed": object_seed,
            "shape": obj.shape,  # the primitive, one of SHAPES
        }


class MovingObjectDataset(SceneDataset):
    """SV4D 2.0's layout: one moving, deforming object seen at `num_frames` times from `num_views` cameras.

    View 0 is the input camera (the input video); views 1 .. V-1 are the novel views the model generates,
    spread round the object (azimuths offset + k 360 / V plus a little jitter, increasing relative to view 0,
    like the script's 0 / 60 / 120 / 180 / 240). Elevations are drawn independently inside `elevation_range`.
    Over the clip (times 0 .. 1, the same for every view) the object translates (up to MAX_SHIFT from the centre),
    turns about its own z axis (up to MAX_TURN_DEG) and squashes / stretches along it (up to MAX_SQUASH), each
    at a random speed.
    """

    SCALE_RANGE = (0.45, 0.6)  # smaller than random_object's: the motion must stay inside the frame
    MAX_SHIFT = 0.1  # world units from the centre
    MAX_TURN_DEG = 90.0  # over the whole clip
    MAX_SQUASH = 0.25  # squash = 1 + a sin(2 pi t + phase), |a| <= MAX_SQUASH
    JITTER = 1 / 6  # largest random shift of a novel view, as a fraction of the spacing between views
    # narrower than the renderer's 40 degrees, so that the object, small for its motion to stay in view, is framed
    # as SV4D 2.0's script frames an input video (the whole motion filling about 90% of the frame): over 300 videos
    # the farthest object pixel lies 94% of the way from the centre to the edge (69% at 40 degrees), and the object
    # covers 27% of a frame (15%), as OrbitDataset's still objects do (benchmarks/renderer.py)
    FOV_DEG = 30.0

    def __init__(self, num_frames: int = 3, num_views: int = 5, size: int = 64, length: int = 1000, seed: int = 0,
                 elevation_range=(-5.0, 20.0), fov_deg: float = FOV_DEG):
        super().__init__(size, length, seed)
        if num_frames < 1 or num_views < 2:
            raise ValueError(f"Need num_frames >= 1 and num_views >= 2 (the input camera and at least one novel "
                             f"view); got num_frames={num_frames}, num_views={num_views}.")
        check_cameras(0.0, 0.0, RADIUS, fov_deg, size)  # an impossible field of view fails here, not per item
        self.num_frames, self.num_views, self.fov_deg = num_frames, num_views, fov_deg
        self.elevation_range = check_range("elevation_range", elevation_range)

    def cameras(self, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """Elevations and azimuths `v` in degrees, view 0 the input camera, azimuths increasing from it."""
        spacing = 360.0 / self.num_views
        jitter = (torch.rand(self.num_views, generator=generator) * 2 - 1) * self.JITTER * spacing
        jitter[0] = 0.0
        relative = torch.arange(self.num_views) * spacing + jitter  # v, increasing: jitter < spacing / 2
        azimuths = torch.remainder(uniform(generator, 0.0, 360.0) + relative, 360.0)
        low, high = self.elevation_range
        elevations = low + (high - low) * torch.rand(self.num_views, generator=generator)
        return elevations, azimuths

    def poses(self, obj: SceneObject, times: torch.Tensor, generator: torch.Generator) -> list[SceneObject]:
        """The object at each time: shifted, turned about its z axis and squashed, each at a random speed."""
        velocity = F.normalize(torch.randn(3, generator=generator), dim=0) * uniform(generator, 0, 2 * self.MAX_SHIFT)
        turn = math.radians(uniform(generator, -self.MAX_TURN_DEG, self.MAX_TURN_DEG))
        squash, phase = uniform(generator, -self.MAX_SQUASH, self.MAX_SQUASH), uniform(generator, 0, 2 * math.pi)
        return [
            replace(obj, position=velocity * (t - 0.5), rotation=obj.rotation @ rotation_about_z(turn * t),
                    squash=1 + squash * math.sin(2 * math.pi * t + phase))
            for t in times.tolist()
        ]

    def __getitem__(self, index: int) -> dict:
        return self.clip(index, torch.linspace(0.0, 1.0, self.num_frames))

    @float32
    def clip(self, index: int, times: torch.Tensor) -> dict:
        """Item `index` rendered at `times`: 0 .. 1 spans the item's clip, and later times carry its motion on at
        the same speeds (a longer video for autoregressive windows); the item's own frames are bit for bit these."""
        generator, object_seed = self.generator(index)
        obj = random_object(generator, scale_range=self.SCALE_RANGE)
        elevations, azimuths = self.cameras(generator)
        frames = [render(pose, elevations, azimuths, fov_deg=self.fov_deg, size=self.size)
                  for pose in self.poses(obj, times, generator)]
        return {
            "frames": torch.stack(frames),  # t v 3 h w
            "elevations_deg": elevations,  # v
            "azimuths_deg": azimuths,  # v, absolute; view 0 is the input camera
            "times": times,  # t
            "object_seed": object_seed,
            "shape": obj.shape,  # the primitive, one of SHAPES
        }


# --------------------------------------------------------------------------------------- motion labels

MOTION_THRESHOLD = 0.05  # darkness (0 on white, 1 on black) below which a pixel counts as background
MOTION_SCALE = 4000.0  # motion_bucket_id per frame height per frame: MotionVideoDataset's fastest land near 190


def measure_motion(frames: torch.Tensor) -> float:
    """How fast the object moves in a clip `t 3 h w` in [-1, 1] on white: the mean distance its centroid travels
    between consecutive frames, in frame heights per frame (so clips of any size compare).

    The centroid weighs each pixel by how much darker than white it is, less MOTION_THRESHOLD (so faint noise in
    a generated clip's background counts for nothing). It grows in proportion to the object's speed across the
    image; a clip that only turns its object in place measures about 0.
    """
    if frames.ndim != 4 or frames.shape[1] != 3 or frames.shape[0] < 2:
        raise ValueError(f"measure_motion needs a clip shaped (t, 3, h, w) with t >= 2 frames, got "
                         f"{tuple(frames.shape)}.")
    if not torch.isfinite(frames).all():
        raise ValueError("measure_motion needs finite pixel values in [-1, 1]; the clip has NaN or inf.")
    frames = frames.detach().float().cpu()
    weights = ((1 - frames.mean(dim=1)) / 2 - MOTION_THRESHOLD).clamp(min=0)  # t h w
    totals = weights.sum(dim=(1, 2))  # t
    if (totals == 0).any():
        empty = torch.nonzero(totals == 0).flatten().tolist()
        raise ValueError(f"Frames {empty} are blank (white): measure_motion follows an object on a white "
                         "background, so every frame must show one.")
    rows = torch.arange(frames.shape[2], dtype=torch.float32)
    columns = torch.arange(frames.shape[3], dtype=torch.float32)
    centroids = torch.stack([(weights.sum(dim=1) * columns).sum(dim=1), (weights.sum(dim=2) * rows).sum(dim=1)],
                            dim=1) / totals[:, None]  # t 2: x, y in pixels
    return (centroids.diff(dim=0).norm(dim=1).mean() / frames.shape[2]).item()


def motion_bucket(motion: float) -> int:
    """SVD's `motion_bucket_id` (0 .. 255) of a `measure_motion` value: round(motion * MOTION_SCALE).
    Like SVD's buckets, the top one holds every clip at least that fast (255 / MOTION_SCALE frame heights a frame)."""
    if not (math.isfinite(motion) and motion >= 0):
        raise ValueError(f"motion must be a finite measure_motion value >= 0, got {motion}.")
    return min(round(motion * MOTION_SCALE), 255)


def sliding_clip(obj: SceneObject, elevation_deg: float, azimuth_deg: float, direction_deg: float, speed: float,
                 fps: float, num_frames: int, size: int = 64) -> torch.Tensor:
    """A clip `t 3 h w` in [-1, 1] of `obj` sliding across the image of one camera at `speed` world units per
    second, sampled at `fps`: direction_deg 0 moves it right, 90 up. The path is centred on the object's position."""
    right, up = cameras(torch.tensor([elevation_deg]), torch.tensor([azimuth_deg]), RADIUS)[0, :3, :2].T  # 3, 3
    angle = math.radians(direction_deg)
    velocity = speed * (math.cos(angle) * right + math.sin(angle) * up)  # 3: in the image plane
    seconds = (torch.arange(num_frames) - (num_frames - 1) / 2) / fps  # t, centred on 0
    return torch.cat([render(replace(obj, position=obj.position + s * velocity), elevation_deg, azimuth_deg,
                             size=size) for s in seconds.tolist()])


class MotionVideoDataset(SceneDataset):
    """SVD's layout: single-view clips of an object moving across the image at a known speed, with a MEASURED
    `motion_bucket_id`, as SVD's training clips carry (it measured optical flow; here `measure_motion`).

    One camera (random elevation in `elevation_range`, random azimuth) watches the object slide along a random
    direction in the image plane at `speed` world units per second, sampled at a random `fps` of `fps_choices`:
    it moves speed / fps per frame, and the path is centred on the origin. Speeds are uniform in [0, max_speed],
    max_speed = max_travel * min(fps_choices) / (num_frames - 1): the slowest frame rate covers at most
    `max_travel` world units, so every clip stays inside the frame.
    """

    SCALE_RANGE = (0.4, 0.55)  # smaller than random_object's: the object travels

    def __init__(self, num_frames: int = 8, size: int = 64, length: int = 1000, seed: int = 0,
                 fps_choices=(3, 6, 12), elevation_range=(-5.0, 20.0), max_travel: float = 0.7):
        super().__init__(size, length, seed)
        if num_frames < 2 or not fps_choices or min(fps_choices) < 1 or not 0 < max_travel <= 1.0:
            raise ValueError(f"Need num_frames >= 2, fps_choices of whole frame rates >= 1 and 0 < max_travel <= 1 "
                             f"(world units); got num_frames={num_frames}, fps_choices={fps_choices}, "
                             f"max_travel={max_travel}.")
        self.num_frames, self.fps_choices = num_frames, tuple(int(fps) for fps in fps_choices)
        self.elevation_range = check_range("elevation_range", elevation_range)
        self.max_speed = max_travel * min(self.fps_choices) / (num_frames - 1)

    @float32
    def __getitem__(self, index: int) -> dict:
        generator, object_seed = self.generator(index)
        obj = random_object(generator, scale_range=self.SCALE_RANGE)
        elevation, azimuth = uniform(generator, *self.elevation_range), uniform(generator, 0.0, 360.0)
        fps = self.fps_choices[torch.randint(len(self.fps_choices), (), generator=generator).item()]
        speed = uniform(generator, 0.0, self.max_speed)
        direction_deg = uniform(generator, 0.0, 360.0)
        frames = sliding_clip(obj, elevation, azimuth, direction_deg, speed, fps, self.num_frames, self.size)
        return {
            "frames": frames,
            "elevation_deg": elevation,
            "azimuth_deg": azimuth,
            "speed": speed,  # world units per second
            "fps": fps,
            "fps_id": fps - 1,  # SVD's convention
            "motion_bucket_id": motion_bucket(measure_motion(frames)),
            "object_seed": object_seed,
            "shape": obj.shape,  # the primitive, one of SHAPES
        }


# ------------------------------------------------------------------------------------------ batch builders
# Each takes a list of dataset items (DataLoader(dataset, batch_size=b, collate_fn=list) gives one) and returns
# the batch the official conditioner reads, shaped as the pipelines build it at inference, b samples stacked.


def stack(items: list[dict], key: str) -> torch.Tensor:
    """One key of every item, stacked along a new batch dimension."""
    if not items:
        raise ValueError("A batch needs at least one item; got an empty list.")
    return torch.stack([torch.as_tensor(item[key]) for item in items])


def cond_aug_values(cond_aug, batch_size: int, generator: torch.Generator | None) -> torch.Tensor:
    """`b` noise levels: `cond_aug` for every sample, or log-uniform in a (low, high) range, one per sample."""
    if isinstance(cond_aug, (tuple, list)):
        low, high = cond_aug
        if not 0 < low <= high:
            raise ValueError(f"A cond_aug range must be (low, high) with 0 < low <= high, got {cond_aug}.")
        log_low, log_high = math.log(low), math.log(high)
        return (log_low + (log_high - log_low) * torch.rand(batch_size, generator=generator)).exp()
    if not cond_aug >= 0:
        raise ValueError(f"cond_aug must be a noise level >= 0 or a (low, high) range, got {cond_aug}.")
    return torch.full((batch_size,), float(cond_aug))


def image_conditioning(images: torch.Tensor, cond_aug, num_frames: int, generator) -> dict:
    """The SVD-family image keys for conditioning images `b 3 h w`: the clean image (CLIP), the image plus
    cond_aug noise (the VAE's concat) and cond_aug itself, repeated to every frame `(b t)` as `build_batch` does."""
    levels = cond_aug_values(cond_aug, len(images), generator)  # b
    noise = torch.randn(images.shape, generator=generator)
    return {
        "cond_frames_without_noise": images,  # b 3 h w
        "cond_frames": images + levels[:, None, None, None] * noise,  # b 3 h w
        "cond_aug": repeat(levels, "b -> (b t)", t=num_frames),
    }


def orbit_batch(items: list[dict], cond_aug=1e-5, generator: torch.Generator | None = None) -> dict:
    """SV3D_p's training batch from OrbitDataset items: the orbit as targets, conditioned on its LAST view.

    cond_aug: one noise level (the script's 1e-5) or a (low, high) range drawn log-uniformly per sample.
    """
    frames = stack(items, "frames")  # b v 3 h w
    b, v = frames.shape[:2]
    polars = torch.cat([elevation_to_polar_rad(item["elevations_deg"]) for item in items])
    azimuths = torch.cat([torch.deg2rad(relative_azimuths_deg(item["azimuths_deg"])) for item in items])
    return {
        "frames": rearrange(frames, "b v c h w -> (b v) c h w"),
        **image_conditioning(frames[:, -1], cond_aug, v, generator),
        "polars_rad": polars.float(),  # (b v)
        "azimuths_rad": azimuths.float(),  # (b v), relative to the last view: 0 there
        "num_video_frames": v,
        "image_only_indicator": torch.zeros(b, v),
    }


def video_batch(items: list[dict], cond_aug=0.02, generator: torch.Generator | None = None) -> dict:
    """SVD's training batch from MotionVideoDataset items: the clip as targets, conditioned on its FIRST frame,
    its frame rate (fps_id) and its measured motion (motion_bucket_id), each repeated to every frame.

    cond_aug: one noise level (the script's 0.02) or a (low, high) range drawn log-uniformly per sample.
    """
    frames = stack(items, "frames")  # b t 3 h w
    b, t = frames.shape[:2]

    def per_frame(key: str) -> torch.Tensor:
        return repeat(stack(items, key).float(), "b -> (b t)", t=t)

    return {
        "frames": rearrange(frames, "b t c h w -> (b t) c h w"),
        **image_conditioning(frames[:, 0], cond_aug, t, generator),
        "fps_id": per_frame("fps_id"),
        "motion_bucket_id": per_frame("motion_bucket_id"),
        "num_video_frames": t,
        "image_only_indicator": torch.zeros(b, t),
    }


def moving_object_batch(items: list[dict], generator: torch.Generator | None = None) -> dict:
    """SV4D 2.0's training batch from MovingObjectDataset items, in the layout of one pass of the pipeline
    (`SV4D2Pipeline.window_conditioning`): T times x V' novel views per sample, frames ordered `(b t v)`.

    Each item's view 0 is the input video; its views 1 .. V-1 are the V' = V - 1 views the network generates:
    - frames `(b t v') 3 h w`: the targets, time-major as the network orders them;
    - cond_motion `(b t)` and cond_frames_without_noise `(b t)`: the input video (CLIP embeds each time);
    - cond_frames `(b t v')`: each target frame's input-video frame at the same time;
    - cond_view `(b v')`: the novel views at time 0 (the reference views a pass starts from);
    - polar_rad, azimuth_rad `(b t v')`: `minigen.camera.sv4d2_camera_inputs` (relative to view 0);
    - image_only_indicator ones `b (t v')`, as every pass that has reference views.
    No noise is drawn (SV4D's encoders add none), so `generator` is unused; it is taken for a uniform call.
    """
    frames = stack(items, "frames")  # b t v 3 h w
    b, t, v = frames.shape[:3]
    novel_views, input_video = frames[:, :, 1:], frames[:, :, 0]  # b t v' 3 h w, b t 3 h w
    angles = [sv4d2_camera_inputs(Trajectory(item["elevations_deg"], item["azimuths_deg"]), num_times=t)
              for item in items]
    return {
        "frames": rearrange(novel_views, "b t v c h w -> (b t v) c h w"),
        "cond_frames_without_noise": rearrange(input_video, "b t c h w -> (b t) c h w"),
        "cond_frames": repeat(input_video, "b t c h w -> (b t v) c h w", v=v - 1),
        "polar_rad": torch.cat([angle["polar_rad"] for angle in angles]).float(),
        "azimuth_rad": torch.cat([angle["azimuth_rad"] for angle in angles]).float(),
        "cond_view": rearrange(novel_views[:, 0], "b v c h w -> (b v) c h w"),
        "cond_motion": rearrange(input_video, "b t c h w -> (b t) c h w"),
        "num_video_frames": t * (v - 1),
        "image_only_indicator": torch.ones(b, t * (v - 1)),
    }
