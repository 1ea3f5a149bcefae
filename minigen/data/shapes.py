"""Coloured shapes: a procedural, labelled image dataset small enough to train a UNet on a laptop CPU.

Every image is one filled shape (circle, square, triangle or cross) of random position, size and colour
on a black background, RGB in [-1, 1], drawn for a whole batch at once from signed distance functions
(no per-image loop, no image library). Same generator seed, same images. Notebook 04 trains a tiny
class-conditional UNet on it (the recipe `minigen.recipes.tiny_image`); the reference has no such dataset (it trains on
web-scale images), so this is the course's stand-in.
"""

import torch
from einops import rearrange

SHAPES = ("circle", "square", "triangle", "cross")  # label i is SHAPES[i]


def pixel_grid(image_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Pixel-centre coordinates `x`, `y` (each `h w`) spanning [-1, 1]; y grows downwards as in images."""
    axis = (torch.arange(image_size) + 0.5) / image_size * 2 - 1
    y, x = torch.meshgrid(axis, axis, indexing="ij")
    return x, y


def signed_distances(u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Signed distance (negative inside) of every shape of SHAPES at local coordinates `u`, `v`.

    `u`, `v` are `... h w` positions relative to the shape's centre, in units of its size (radius);
    the result is `k ... h w`, one map per shape, in the same units.
    """
    circle = (u**2 + v**2).sqrt() - 1
    square = torch.maximum(u.abs(), v.abs()) - 0.8  # side 1.6: about the circle's area
    # equilateral triangle pointing up: inside the three edges, each at distance `inradius` from its centroid;
    # the centroid sits inradius / 2 below the centre so the triangle spans [-0.86, 0.86] both ways
    inradius = 0.57
    edge_angles = torch.tensor([90.0, 210.0, 330.0]).deg2rad()  # outward edge normals (y points down)
    normals = torch.stack([edge_angles.cos(), edge_angles.sin()], dim=1)  # 3 2
    triangle = torch.stack([nx * u + ny * (v - inradius / 2) for nx, ny in normals]).amax(dim=0) - inradius
    bar = 0.3  # half-width of the cross's arms
    horizontal = torch.maximum(u.abs() - 1, v.abs() - bar)
    vertical = torch.maximum(u.abs() - bar, v.abs() - 1)
    cross = torch.minimum(horizontal, vertical)
    return torch.stack([circle, square, triangle, cross])


def hue_to_rgb(hue: torch.Tensor, saturation: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
    """HSV -> RGB for `n` colours (each input `n`, in [0, 1]); returns `n 3` in [0, 1]."""
    offsets = torch.tensor([5.0, 3.0, 1.0])  # the standard HSV formula's offsets for R, G, B
    k = (offsets[None] + 6 * hue[:, None]) % 6  # n 3
    ramp = torch.minimum(k, 4 - k).clamp(0, 1)
    return value[:, None] * (1 - saturation[:, None] * ramp)


def render_shapes(labels: torch.Tensor, centres: torch.Tensor, sizes: torch.Tensor, colours: torch.Tensor,
                  image_size: int = 32) -> torch.Tensor:
    """Draw shape `labels[i]` (`n`) at `centres[i]` (`n 2`, x y in [-1, 1]) with radius `sizes[i]` (`n`)
    and colour `colours[i]` (`n 3` in [0, 1]); returns images `n 3 h w` in [-1, 1].

    Edges are anti-aliased: a pixel's coverage falls from 1 to 0 over one pixel width across the boundary.
    """
    if labels.min() < 0 or labels.max() >= len(SHAPES):
        raise ValueError(f"Shape labels must be in 0 .. {len(SHAPES) - 1} ({', '.join(SHAPES)}); "
                         f"got values from {labels.min().item()} to {labels.max().item()}.")
    x, y = pixel_grid(image_size)  # h w
    radius = rearrange(sizes, "n -> n 1 1")
    u = (x - rearrange(centres[:, 0], "n -> n 1 1")) / radius  # n h w, in units of the radius
    v = (y - rearrange(centres[:, 1], "n -> n 1 1")) / radius
    distances = signed_distances(u, v)  # k n h w
    distance = distances[labels, torch.arange(len(labels))] * radius  # n h w, back in image units
    pixel_width = 2 / image_size
    coverage = (0.5 - distance / pixel_width).clamp(0, 1)  # n h w: 1 inside, 0 outside
    images = rearrange(coverage, "n h w -> n 1 h w") * rearrange(colours, "n c -> n c 1 1")  # black background
    return images * 2 - 1


def sample_shapes(n: int, generator: torch.Generator | None = None, image_size: int = 32,
                  labels: torch.Tensor | None = None, size_range: tuple[float, float] = (0.4, 0.7),
                  jitter: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """`n` random shape images (`n 3 h w` in [-1, 1]) and their labels (`n`, indices into SHAPES).

    The size (radius, as a fraction of the image's half-width, uniform in `size_range`), the position
    (anywhere the shape fits, or only `jitter` of that room around the centre) and a bright, saturated
    colour are drawn from `generator`; pass `labels` to choose the shapes instead of drawing them.
    """
    if n < 1 or image_size < 8:
        raise ValueError(f"Need n >= 1 images of image_size >= 8 pixels; got n={n}, image_size={image_size}.")
    if not 0 < size_range[0] <= size_range[1] <= 1 or not 0 <= jitter <= 1:
        raise ValueError(f"Need 0 < size_range[0] <= size_range[1] <= 1 (a fraction of the half-width) and "
                         f"0 <= jitter <= 1; got size_range={size_range}, jitter={jitter}.")
    if labels is None:
        labels = torch.randint(len(SHAPES), (n,), generator=generator)
    elif labels.shape != (n,):
        raise ValueError(f"labels must have shape ({n},), one per image; got {tuple(labels.shape)}.")
    uniform = torch.rand(n, 6, generator=generator)
    sizes = size_range[0] + (size_range[1] - size_range[0]) * uniform[:, 0]
    centres = (uniform[:, 1:3] * 2 - 1) * (1 - sizes[:, None]) * jitter  # keeps the shape inside the image
    colours = hue_to_rgb(uniform[:, 3], saturation=0.6 + 0.4 * uniform[:, 4], value=0.75 + 0.25 * uniform[:, 5])
    return render_shapes(labels, centres, sizes, colours, image_size), labels


class ShapesDataset(torch.utils.data.Dataset):
    """A fixed set of `num_images` shape images drawn once from `seed`; items are (image `3 h w`, label)."""

    def __init__(self, num_images: int, seed: int = 0, image_size: int = 32):
        generator = torch.Generator().manual_seed(seed)
        self.images, self.labels = sample_shapes(num_images, generator, image_size)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.images[index], self.labels[index]
