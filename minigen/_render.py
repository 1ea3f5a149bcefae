"""How the widget modules turn matplotlib figures into pictures a notebook keeps: flat colour maps and palette PNGs.

Notebooks keep their outputs (students read them on the web), and every image a widget has shown is stored in
the notebook; both helpers keep those images small. Used by widgets, camera_widgets, orbit_widgets and
grid_widgets.
"""

import io

import matplotlib
import PIL.Image
from matplotlib.figure import Figure

COLOUR_LEVELS = 9  # easy to read, and a map with no smooth gradients compresses well


def stepped_style(colormap: str, **options) -> dict:
    """`imshow` keywords for `colormap` in COLOUR_LEVELS flat levels, drawn without smoothing; `options` add or
    override keywords (vmin, origin, alpha...)."""
    return {"cmap": matplotlib.colormaps[colormap].resampled(COLOUR_LEVELS), "interpolation": "nearest", **options}


def figure_png(figure: Figure, colours: int = 32) -> bytes:
    """The figure as PNG bytes for an ipywidgets.Image, reduced to a palette of `colours` colours.

    Notebooks store every widget image they show; the palette makes each about 10x smaller.
    """
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    palette_buffer = io.BytesIO()
    PIL.Image.open(buffer).convert("RGB").quantize(colours).save(palette_buffer, format="png", optimize=True)
    return palette_buffer.getvalue()
