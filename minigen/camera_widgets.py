"""The camera explorer: sliders pick a camera trajectory; a 3D view, the angle table and the embedding follow.

Taught in notebook 06; draws what `minigen.camera` computes (the reference has no such tool). CPU only:
matplotlib renders a PNG into an ipywidgets.Image, so it works in any Jupyter front end and in tests.
"""

import ipywidgets as widgets
import torch
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from ._render import figure_png, stepped_style
from .camera import (
    SV3D_NUM_FRAMES,
    Trajectory,
    camera_embedding,
    camera_positions,
    default_trajectory,
    dynamic_orbit,
    look_at,
    static_orbit,
    sv4d2_camera_inputs,
)

# trajectory type -> the model whose script default it is (None: built from the sliders)
TRAJECTORY_TYPES = {
    "static orbit": None,
    "dynamic orbit": None,
    "SV3D_p default": "sv3d_p",
    "SV4D 2.0 default": "sv4d2",
    "SV4D 2.0 8-view default": "sv4d2_8views",
}
SV4D2_MODELS = ("sv4d2", "sv4d2_8views")
HEAT_MAP_STYLE = stepped_style("RdBu", vmin=-1, vmax=1, aspect="auto")


def network_angles(trajectory: Trajectory, model: str | None = None) -> tuple[torch.Tensor, torch.Tensor, int]:
    """(polars_rad, azimuths_rad, input view index) as the network sees one time step of `trajectory`.

    SV4D 2.0 takes its novel views relative to the input view, frame 0; everything else follows SV3D_p,
    whose input view is the last frame.
    """
    if model in SV4D2_MODELS:
        inputs = sv4d2_camera_inputs(trajectory, num_times=1)
        return inputs["polar_rad"], inputs["azimuth_rad"], 0
    return trajectory.polars_rad, trajectory.relative_azimuths_rad, trajectory.num_frames - 1


def _draw_object(ax, half_size: float = 0.4) -> None:
    """A wire cube at the origin: the object the cameras look at."""
    corners = torch.cartesian_prod(*[torch.tensor([-half_size, half_size])] * 3)  # 8 3
    for i in range(8):
        for j in range(i + 1, 8):
            if (corners[i] != corners[j]).sum() == 1:  # neighbours differ in one coordinate
                ax.plot(*corners[[i, j]].T.tolist(), color="0.5", lw=1)


def _draw_cameras(ax, trajectory: Trajectory, input_view: int, radius: float = 2.0) -> None:
    """Each camera as a small pyramid pointing at the object, coloured by frame; the input view in red."""
    positions = camera_positions(trajectory.elevations_deg, trajectory.azimuths_deg, radius)
    poses = look_at(positions)  # t 4 4
    input_view %= trajectory.num_frames
    for frame, pose in enumerate(poses):
        right, up, backward, centre = pose[:3, 0] * 0.15, pose[:3, 1] * 0.11, pose[:3, 2] * 0.35, pose[:3, 3]
        base = [centre - backward + sx * right + sy * up for sx, sy in ((1, 1), (-1, 1), (-1, -1), (1, -1))]
        colour = "red" if frame == input_view else (frame / max(trajectory.num_frames - 1, 1), 0.3, 0.8)
        for corner, next_corner in zip(base, base[1:] + base[:1], strict=True):
            ax.plot(*torch.stack([centre, corner, next_corner]).T.tolist(), color=colour, lw=1)
    ax.plot(*positions.T.tolist(), color="0.7", lw=0.8, ls="--")
    ax.text(*positions[input_view].tolist(), "  input view", color="red", fontsize=8)


def trajectory_figure(trajectory: Trajectory, model: str | None = None, dpi: int = 72) -> Figure:
    """The cameras around the object (left) and their embedding, one row per camera (right)."""
    polars_rad, azimuths_rad, input_view = network_angles(trajectory, model)
    figure = Figure(figsize=(9, 3.3), dpi=dpi)
    ax = figure.add_subplot(1, 2, 1, projection="3d")
    _draw_object(ax)
    _draw_cameras(ax, trajectory, input_view)
    ax.set(xlim=(-2, 2), ylim=(-2, 2), zlim=(-2, 2), xlabel="x", ylabel="y", zlabel="z (up)")
    ax.set_box_aspect((1, 1, 1))
    ax.set_title(f"{trajectory.name}: {trajectory.num_frames} cameras", fontsize=10)
    heat = figure.add_subplot(1, 2, 2)
    image = heat.imshow(camera_embedding(polars_rad, azimuths_rad).numpy(), **HEAT_MAP_STYLE)
    heat.axvline(511.5, color="k", lw=1)
    heat.yaxis.set_major_locator(MaxNLocator(integer=True))
    heat.set(xlabel="features: polar (0-511) | azimuth (512-1023)", ylabel="camera (network order)")
    heat.set_title("camera embedding (sinusoidal, 512 per angle)", fontsize=10)
    figure.colorbar(image, ax=heat, fraction=0.04)
    figure.tight_layout()
    return figure


def angle_table_html(trajectory: Trajectory, model: str | None = None) -> str:
    """The trajectory in degrees and what the network receives in radians, one column per camera."""
    polars_rad, azimuths_rad, _ = network_angles(trajectory, model)
    rows = {
        "elevation (deg)": trajectory.elevations_deg,
        "azimuth (deg)": trajectory.azimuths_deg,
        "network polar (rad)": polars_rad.tolist(),
        "network azimuth (rad)": azimuths_rad.tolist(),
    }
    lines = [f"{name:>22}: " + " ".join(f"{value:6.2f}" for value in values) for name, values in rows.items()]
    return "<pre style='font-size:10px; line-height:1.2'>" + "\n".join(lines) + "</pre>"


class CameraExplorer(widgets.VBox):
    """Sliders -> `self.trajectory`, redrawn live: the cameras round the object, their embedding and the angle
    table. The explorer is a widget (display it); `explorer.trajectory` is what the sliders describe (None until
    they describe possible cameras), `explorer.message` says why they do not."""

    def __init__(self, dpi: int = 72):
        self.dpi = dpi
        style = {"description_width": "110px"}
        self.kind = widgets.Dropdown(options=list(TRAJECTORY_TYPES), description="trajectory", style=style)
        self.elevation = widgets.FloatSlider(10.0, min=-90, max=90, step=1, description="elevation (deg)",
                                             continuous_update=False, style=style)
        self.num_frames = widgets.IntSlider(SV3D_NUM_FRAMES, min=2, max=40, description="azimuth count",
                                            continuous_update=False, style=style)
        self.azimuth_offset = widgets.FloatSlider(0.0, min=0, max=360, step=5, description="azimuth offset",
                                                  continuous_update=False, style=style)
        self.amplitude = widgets.FloatSlider(10.0, min=0, max=45, step=1, description="swing (deg)",
                                             continuous_update=False, style=style)
        self.message = widgets.HTML()
        self.angles = widgets.HTML()
        self.image = widgets.Image(format="png")
        self.sliders = (self.elevation, self.num_frames, self.azimuth_offset, self.amplitude)
        for control in (self.kind, *self.sliders):
            control.observe(self.update, names="value")
        super().__init__([
            widgets.HBox([self.kind, self.elevation, self.num_frames]),
            widgets.HBox([self.azimuth_offset, self.amplitude]),
            self.message, self.image, self.angles,
        ])
        self.trajectory = None
        self.update()

    @property
    def model(self) -> str | None:
        """The model whose script default trajectory is chosen, or None when the sliders build the orbit."""
        return TRAJECTORY_TYPES[self.kind.value]

    def build_trajectory(self) -> Trajectory:
        """The trajectory the controls describe (raises ValueError for impossible cameras)."""
        if self.model is not None:
            return default_trajectory(self.model)
        if self.kind.value == "dynamic orbit":
            return dynamic_orbit(self.num_frames.value, self.elevation.value, self.amplitude.value,
                                 azimuth_offset_deg=self.azimuth_offset.value)
        return static_orbit(self.num_frames.value, self.elevation.value, self.azimuth_offset.value)

    def update(self, change=None) -> None:
        """Rebuild the trajectory from the controls and redraw; impossible cameras leave the last picture and say
        why. Sliders that the chosen trajectory type ignores are disabled."""
        for slider in self.sliders:
            slider.disabled = self.model is not None
        self.amplitude.disabled = self.kind.value != "dynamic orbit"
        try:
            trajectory = self.build_trajectory()
        except ValueError as error:  # e.g. elevation + swing above 90: shown, never clamped
            self.message.value = f"<pre style='color:#b00'>{error}</pre>"
            return
        self.message.value = ""
        self.trajectory = trajectory
        self.angles.value = angle_table_html(trajectory, self.model)
        self.image.value = figure_png(trajectory_figure(trajectory, self.model, self.dpi))


def camera_explorer(dpi: int = 72) -> CameraExplorer:
    """Build the camera explorer; `explorer.trajectory` is the trajectory the sliders currently describe."""
    return CameraExplorer(dpi)
