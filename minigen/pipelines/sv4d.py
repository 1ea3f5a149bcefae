"""SV4D and SV4D 2.0: a video of an object to videos of it seen from novel views (sv4d, sv4d2, sv4d2_8views).

    pipe = SV4DPipeline.from_checkpoint("checkpoints/sv4d.safetensors", sv3d="checkpoints/sv3d_u.safetensors",
                                        device="cuda", dtype=torch.float16)
    videos = pipe(read_video("camel.mp4"))  # uint8 [8 views, 21 frames, 576, 576, 3]
    pipe = SV4D2Pipeline.from_checkpoint("checkpoints/sv4d2.safetensors", device="cuda", dtype=torch.float16)
    videos = pipe(read_video("camel.mp4"))  # uint8 [4 views, 21 frames, 576, 576, 3]

Both models denoise T time frames x V views in one pass (SV4D 5 x 8, SV4D 2.0 12 x 4, its 8-view model
5 x 8), ordered (t v). A pass is conditioned on the input video at its T times (`cond_motion`, one CLIP
token per time, and the frame itself for each of its views) and on V views of the object at one time
(`cond_view`), plus the V cameras. The results fill an image matrix `images[t, v]` (`t v 3 H W`, view 0 is
the input video) that later passes read their `cond_view` from. As the scripts do, the input video is
first framed: one box round the object in all frames, padded so that it fills 0.917 (SV4D) or 0.9 (SV4D 2.0)
of the frame, resized to 576 and put on white (minigen.preprocess.prepare_object_video; preprocess=False
takes frames as they are).
Used by the second half of the course (the video notebooks).
Reference: scripts/sampling/simple_video_sample_4d.py, simple_video_sample_4d2.py,
scripts/demo/sv4d_helpers.py and scripts/sampling/configs/sv4d*.yaml.
"""

import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from einops import rearrange, repeat
from tqdm.auto import tqdm

from .. import diffusion
from ..camera import (
    SV3D_NUM_FRAMES,
    Trajectory,
    default_trajectory,
    sv4d2_camera_inputs,
    sv4d_camera_inputs,
    sv4d_subsampled_views,
    validate_cameras,
)
from ..diffusion import EulerEDMSampler, LinearPredictionGuider, SpatiotemporalPredictionGuider
from ..io import check_uint8, read_video, to_uint8
from ..preprocess import prepare_object_video
from .common import (
    Pipeline,
    check_count,
    generator_for,
    identify_preset,
    image_to_tensor,
    make_sampler,
)
from .engine import MULTIVIEW_KEYS, DiffusionEngine
from .sv3d import SV3DPipeline
from .video_common import decode_latents, encoding_chunks, latent_shape

# embeddings zeroed in the unconditional branch: the input frames and the reference views (force_uc_zero_embeddings)
FORCE_UC_ZERO_EMBEDDINGS = ("cond_frames", "cond_frames_without_noise", "cond_view", "cond_motion")


@dataclass(frozen=True)
class MultiviewDefaults:
    """One model's defaults, from its sampling script (the scripts build their own sampler, not the config's)."""

    num_steps: int  # sampler steps: 20 (SV4D), 50 (SV4D 2.0)
    guider: type  # SpatiotemporalPredictionGuider or LinearPredictionGuider, built with `for_views`
    cfg: float  # the guider's max_scale (the script's "cfg")
    min_cfg: float = 1.0  # the guider's min_scale
    elevation_deg: float = 0.0  # the script's default elevations_deg
    camera_model: str = "sv4d2"  # minigen.camera's name for the script's default cameras
    window_overlap: int = 0  # SV4D 2.0: frames two consecutive windows share (the 8-view model: 1)
    sv3d_preset: str | None = None  # SV4D: the SV3D model that makes the reference views (the script's sv3d_u)
    sigma_max: float = 700.0  # EDMDiscretization's sigma_max in the scripts (the configs say 500)
    image_size: int = 576  # the square frame size the model was trained at; other sizes are warned about
    num_frames: int = 21  # SV4D 2.0: frames read from the start of the video, at most (the script's n_frames)
    preprocess: bool = True  # frame the object in the input video first, one box for all frames (the scripts')
    image_frame_ratio: float = 0.917  # with preprocess: the object's share of the frame (SV4D 2.0's script: 0.9)
    sampler: type = EulerEDMSampler  # the scripts' sampler


@dataclass
class Window:
    """The conditioning of one pass over T times x V views: what the scripts' prepare_sampling returns."""

    c: dict
    uc: dict
    extra: dict  # the network's other inputs: num_video_frames and image_only_indicator


@dataclass
class WindowNoise:
    """The random draws of one pass, given instead of drawn (the golden cases replay the reference's this way).

    Conditioning noise is `(for c, for uc)`, each {input key: unit noise shaped like that input}: the 1e-5
    augmentation the conditioner's VAE embedders add to cond_frames, cond_view and cond_motion. A field left
    None is drawn from the pipeline's generator as usual.
    """

    start: torch.Tensor | None = None  # `(t v) 4 h w` unit noise the sampler starts from (forward time order)
    augmentation: tuple[dict, dict] | None = None  # the pass's conditioning (SV4D dense windows: the forward one)
    backward_augmentation: tuple[dict, dict] | None = None  # SV4D dense windows: the backward conditioning's


@dataclass
class WindowSample:
    """What one pass produced, its times ascending."""

    times: torch.Tensor  # t: the pass's time frames
    latents: torch.Tensor  # t v 4 h w: the sampler's result
    images: torch.Tensor  # t v 3 H W in [-1, 1]: their decodes, as written into the image matrix


@dataclass
class MultiviewSample:
    """A whole run: the image matrix (view 0 the input video, then the novel views) and every pass in order."""

    images: torch.Tensor  # t v 3 H W in [-1, 1]
    windows: list[WindowSample] = field(default_factory=list)


def window_shape(engine: DiffusionEngine) -> tuple[int, int]:
    """(T, V): times and views per pass, read from the conditioner (N_TIME and N_VIEW of the config)."""
    frames = {entry.input_key: entry.embedder.n_cond_frames for entry in engine.conditioner.entries
              if entry.input_key in MULTIVIEW_KEYS}
    if set(frames) != set(MULTIVIEW_KEYS):
        raise ValueError(f"This engine's conditioner reads no {' / '.join(MULTIVIEW_KEYS)}: it is not an SV4D model.")
    return frames["cond_motion"], frames["cond_view"]


def noise_per_pass(noise: Sequence[WindowNoise] | None, num_passes: int) -> list[WindowNoise]:
    """One WindowNoise per pass (empty ones, i.e. draw everything, when none is given)."""
    if noise is None:
        return [WindowNoise() for _ in range(num_passes)]
    if len(noise) != num_passes:
        raise ValueError(f"This run makes {num_passes} passes; noise has {len(noise)} entries (one per pass).")
    return list(noise)


def sv4d_schedule(frames_per_window: int) -> tuple[list[int], list[int]]:
    """SV4D's passes for T = `frames_per_window`: the anchor times T - 1, 2 (T - 1), ..., (T - 1) T, and the first time
    of each dense window, 0, T - 1, ..., (T - 1)^2 (T = 5: anchors 4 ... 20, windows at 0, 4, 8, 12, 16)."""
    step = frames_per_window - 1
    return ([step * k for k in range(1, frames_per_window + 1)], [step * k for k in range(frames_per_window)])


def window_starts(num_frames: int, frames_per_window: int, stride: int) -> list[int]:
    """First time of each SV4D 2.0 window: every `stride` frames, the last one moved back to end on the last frame;
    a window never starts on a time no earlier window generated (its cond_view is the views at its first time).

    With stride T - 1 (the 8-view model: windows share a frame) this is the script's `range(0, n - T + 1, T - 1)`,
    plus a last window when that range leaves frames at the end (the script leaves them empty and drops them).
    With stride T it is the script's `range(0, n, T)` with its last start clamped to n - T wherever the script
    runs, n < 2 T; from 2 T frames on, the script's window at time T has no views to start from (it crashes), so
    windows start every T - 1 frames instead, each on the last time of the one before.
    """
    starts = [0]
    while starts[-1] + frames_per_window < num_frames:
        latest = starts[-1] + frames_per_window - 1  # the last time generated so far
        starts.append(min(starts[-1] + stride, latest, num_frames - frames_per_window))
    return starts


class MultiviewVideoPipeline(Pipeline):
    """What SV4D and SV4D 2.0 share: loading, input checks, cameras, the conditioning of a pass, sampling
    and decoding. Subclasses set DEFAULTS (preset -> MultiviewDefaults) and give the flow in `__call__`."""

    DEFAULTS: dict[str, MultiviewDefaults] = {}

    def __init__(self, engine: DiffusionEngine, defaults: MultiviewDefaults, device="cpu",
                 offload: str | None = None):
        super().__init__(engine, defaults, device, offload)
        self.frames_per_window, self.views = window_shape(engine)  # T, V
        # frame sides must survive the VAE's and the UNet's halvings: 8 x 8 = 64 for the official models
        vae_factor = 2 ** (len(engine.first_stage_model.decoder.up) - 1)
        self.size_multiple = vae_factor * engine.network.downsampling_factor

    # -- inputs

    def input_frames(self, video, *, keep: int, needed: int, framing: dict, say_dropped: bool = True) -> torch.Tensor:
        """The frames a call samples, `t 3 H W` in [-1, 1]: the video's first `keep` (it must have `needed`; more
        are dropped, with a warning if `say_dropped`), framed as the scripts do unless `framing["preprocess"]`
        (None: the model's default) is off.

        video: uint8 `[N, H, W, 3 or 4]` or a path for minigen.io.read_video (its alpha, if any, marks the
        object). Framing (minigen.preprocess.prepare_object_video): one box round the object in all kept
        frames, padded so it fills `image_frame_ratio` of the frame, resized to `image_size`, on white."""
        framing = dict(framing)
        preprocess = framing.pop("preprocess")
        preprocess = self.defaults.preprocess if preprocess is None else preprocess
        if isinstance(video, (str, Path)):
            video = read_video(video, keep_alpha=preprocess)
        video = check_uint8(video, 4, "The video", (3, 4), fix="read files with minigen.io.read_video")
        if len(video) < needed:
            raise ValueError(f"The video has {len(video)} frames; {type(self).__name__} needs {needed} (one pass "
                             f"covers {self.frames_per_window} times). Give a longer video.")
        if len(video) > keep and say_dropped:
            warnings.warn(f"The video has {len(video)} frames; {type(self).__name__} uses the first {keep}.",
                          stacklevel=3)
        video = video[:keep]
        if preprocess:
            defaults = {"image_size": self.defaults.image_size, "image_frame_ratio": self.defaults.image_frame_ratio}
            chosen = {key: default if framing[key] is None else framing[key] for key, default in defaults.items()}
            video = prepare_object_video(video, **chosen, remove_bg=framing["remove_bg"],
                                         rembg_model_path=framing["rembg_model_path"])
        return self.video_frames(video)

    def video_frames(self, video: np.ndarray) -> torch.Tensor:
        """uint8 `[N, H, W, 3]` -> `N 3 H W` in [-1, 1]: square frames whose side is a multiple of
        `size_multiple` (64), the trained size or warned about."""
        video = check_uint8(video, 4, "An RGB video", (3,), fix="read files with minigen.io.read_video")
        height, width = video.shape[1:3]
        if height != width:
            raise ValueError(f"Frames are {height}x{width}; the model takes square frames of one centred object "
                             "(preprocess=True frames the object as the scripts do).")
        if height != self.defaults.image_size:
            size = self.defaults.image_size
            warnings.warn(f"Frames are {height}x{width}, not {size}x{size}: the model was trained at {size}x{size}, "
                          "so results may be worse.", stacklevel=4)
        return torch.cat([image_to_tensor(frame, multiple_of=self.size_multiple) for frame in video])

    def cameras(self, elevations_deg, azimuths_deg, num_views: int) -> Trajectory:
        """The script's cameras (one number or one per view for elevations_deg, one azimuth per view, degrees),
        checked all at once: `num_views` values, in range, azimuths going round in order. Default: the script's."""
        elevations_deg = self.defaults.elevation_deg if elevations_deg is None else elevations_deg
        if azimuths_deg is None:
            azimuths_deg = default_trajectory(self.defaults.camera_model).azimuths_deg
        validate_cameras(elevations_deg, azimuths_deg, num_views, require_sorted=True)
        return Trajectory(elevations_deg, azimuths_deg)

    def make_sampler(self, num_steps: int | None = None, *, cfg: float | None = None, min_cfg: float | None = None,
                     sampler: str | type | None = None, sampler_options: dict | None = None, progress: bool = True):
        """The scripts' sampler: Euler on the EDM schedule (sigma_max 700), guided per (t v) frame, with the
        reference views and input frames zeroed in the unconditional branch too (additional_cond_keys)."""
        guider = self.defaults.guider.for_views(
            self.views,
            max_scale=self.defaults.cfg if cfg is None else cfg,
            min_scale=self.defaults.min_cfg if min_cfg is None else min_cfg,
            num_frames=self.frames_per_window * self.views, additional_cond_keys=list(MULTIVIEW_KEYS),
        )
        discretization = diffusion.EDMDiscretization(sigma_max=self.defaults.sigma_max)
        return make_sampler(sampler or self.defaults.sampler, discretization,
                            self.defaults.num_steps if num_steps is None else num_steps, guider, progress=progress,
                            **(sampler_options or {}))

    # -- one pass

    def window_conditioning(self, cond_motion: torch.Tensor, cond_view: torch.Tensor, cameras: dict,
                            generator: torch.Generator, encoding_t: int | None,
                            with_views: bool = True, augmentation_noise: tuple[dict, dict] | None = None) -> Window:
        """c, uc and the network's extra inputs of one pass (the scripts' run_img2vid / prepare_sampling).

        cond_motion `t 3 H W`: the input video at the pass's times; cond_view `v 3 H W`: the views the pass
        starts from. `with_views=False` is SV4D 2.0's first window, which has no views yet: cond_view is zeroed
        in c and uc and image_only_indicator is 0 (1 otherwise, also for every SV4D pass). The conditioner
        draws its noise from `generator` unless `augmentation_noise` gives it (see WindowNoise).
        The unconditional pass zeroes the input frames and views, and so also the noise-level part of the
        vector, which the cond_frames embedder returns: the reference does the same.
        """
        device, conditioner = self.placement.device, self.engine.conditioner
        batch = {
            "cond_frames_without_noise": cond_motion,  # t 3 H W -> CLIP: one token per time (crossattn b t d)
            "cond_frames": repeat(cond_motion, "t c h w -> (t v) c h w", v=self.views),  # each view: its time's frame
            **{key: angles.float() for key, angles in cameras.items()},  # polar_rad, azimuth_rad: (t v)
            "cond_view": cond_view,  # v 3 H W
            "cond_motion": cond_motion,  # t 3 H W
        }
        batch = {key: value.to(device) for key, value in batch.items()}
        with self.placement.use(conditioner), encoding_chunks(conditioner, encoding_t):
            c, uc = conditioner.get_unconditional_conditioning(
                batch, force_uc_zero_embeddings=FORCE_UC_ZERO_EMBEDDINGS, generator=generator,
                augmentation_noise=augmentation_noise)
        if not with_views:
            for cond in (c, uc):
                cond["cond_view"] = torch.zeros_like(cond["cond_view"])
        frames = self.frames_per_window * self.views
        # one row per half of the guided batch (uc, c); 1 marks frames as images for the time-mixing alphas
        image_only_indicator = torch.full((2, frames), float(with_views), device=device)
        return Window(c, uc, {"num_video_frames": frames, "image_only_indicator": image_only_indicator})

    def denoiser(self, window: Window):
        """The sampler's denoiser(x, sigma, cond) for one pass: the engine's, with the pass's
        num_video_frames and image_only_indicator."""
        def denoise(x, sigma, cond):
            return self.engine.denoise(x, sigma, cond, **window.extra)
        return denoise

    def start_noise(self, height: int, width: int, generator: torch.Generator,
                    given: torch.Tensor | None = None) -> torch.Tensor:
        """Unit noise `(t v) 4 h w` for one pass, drawn on the CPU (same seed, same result on every device),
        or `given` (checked)."""
        shape = latent_shape(self.engine.first_stage_model, self.frames_per_window * self.views, height, width)
        if given is None:
            given = torch.randn(shape, generator=generator)
        elif tuple(given.shape) != shape:
            raise ValueError(f"A pass starts from noise shaped {shape}, got {tuple(given.shape)}.")
        return given.to(self.placement.device, torch.float32)

    def sample_window(self, sampler, window: Window, noise: torch.Tensor, callback) -> torch.Tensor:
        """A whole sampler run for one pass: latents `(t v) 4 h w`."""
        with self.placement.use(self.engine.model):
            return sampler(self.denoiser(window), noise, window.c, window.uc, callback=callback)

    def decode(self, latents: torch.Tensor, decoding_t: int | None) -> torch.Tensor:
        """Latents `(t v) 4 h w` -> images `t v 3 H W` clamped to [-1, 1], `decoding_t` frames per decoder call."""
        with self.placement.use(self.engine.first_stage_model):
            images = decode_latents(self.engine.first_stage_model, latents, decoding_t, len(latents))
        return rearrange(images.float().clamp(-1.0, 1.0).cpu(), "(t v) c h w -> t v c h w", v=self.views)

    def window_sample(self, times: torch.Tensor, latents: torch.Tensor, decoding_t: int | None) -> WindowSample:
        """Decode a pass's latents `(t v) 4 h w` (times ascending) into its WindowSample."""
        images = self.decode(latents, decoding_t)
        return WindowSample(times, rearrange(latents.float().cpu(), "(t v) c h w -> t v c h w", v=self.views), images)

    @staticmethod
    def novel_view_videos(images: torch.Tensor) -> np.ndarray:
        """The image matrix `t v 3 H W` without the input view, as uint8 videos `[v, t, H, W, 3]`, truncated as the
        scripts save them (minigen.io.to_uint8)."""
        return to_uint8(rearrange(images[:, 1:], "t v c h w -> v t h w c"), mode="truncate")


class SV4DPipeline(MultiviewVideoPipeline):
    """SV4D: 21 input frames -> 8 novel-view videos of 21 frames, 5 times x 8 views per pass.

    The flow of simple_video_sample_4d.py, with n_frames = (T - 1) T + 1 (21 for T = 5):
    1. Reference views: SV3D (sv3d_u, or sv3d_p with the cameras) turns frame 0 into a 21-view orbit, which is
       rolled by one so that the input view comes first; views SV4D_SUBSAMPLED_VIEWS (0, 2, 5, ..., 19; for V views
       per pass minigen.camera.sv4d_subsampled_views(21, V)) become the matrix's time 0 (view 0 is the input frame).
    2. Anchor frames: one pass over times T - 1, 2 (T - 1), ..., n - 1 (4, 8, 12, 16, 20) with cond_view = the
       views of time 0 and cond_motion = the input frames at those times.
    3. Dense windows t0 = 0, T - 1, ... (0, 4, 8, 12, 16) over times t0 ... t0 + T - 1, from fresh noise. The sampler
       alternates two conditionings step by step: even steps go backward (times reversed, cond_view = the views
       of t0 + T - 1: an anchor), odd steps forward (cond_view = the views of t0, which the previous window has
       just regenerated, or SV3D's for t0 = 0). The decoded window overwrites its times in the matrix, anchors
       and time 0 included, so the next window starts from it.
    """

    DEFAULTS = {
        "sv4d": MultiviewDefaults(num_steps=20, guider=SpatiotemporalPredictionGuider, cfg=2.0,
                                  elevation_deg=10.0, camera_model="sv4d", sv3d_preset="sv3d_u"),
        "tiny_sv4d": MultiviewDefaults(num_steps=4, guider=SpatiotemporalPredictionGuider, cfg=2.0,
                                       elevation_deg=10.0, camera_model="sv4d", sv3d_preset="tiny_sv3d", image_size=64,
                                       preprocess=False),
    }

    def __init__(self, engine: DiffusionEngine, defaults: MultiviewDefaults, sv3d: SV3DPipeline | None,
                 device="cpu", offload: str | None = None):
        """`sv3d` makes the reference views in `__call__`; `generate`, which is given them, needs none."""
        super().__init__(engine, defaults, device, offload)
        if getattr(engine.network, "use_camera_emb", False):
            raise ValueError("This engine's UNet embeds the cameras into its view attention (use_camera_emb): it is "
                             "an SV4D 2.0 model; run it with SV4D2Pipeline.")
        sv4d_subsampled_views(SV3D_NUM_FRAMES, self.views)  # raises unless V views can be kept of SV3D's orbit
        self.sv3d = sv3d

    @classmethod
    def from_preset(cls, name: str, weights="default", sv3d: "str | SV3DPipeline | None" = None, device="cpu",
                    dtype: torch.dtype = torch.float32, offload: str | None = None) -> "SV4DPipeline":
        """The preset's pipeline with random weights (tests) or `weights`; `sv3d` is an SV3DPipeline or an SV3D
        preset name (default: the script's sv3d_u, tiny_sv3d for tiny_sv4d)."""
        engine = cls.load_engine(name, weights, device, dtype, offload)
        if not isinstance(sv3d, SV3DPipeline):
            sv3d = SV3DPipeline.from_preset(sv3d or cls.DEFAULTS[name].sv3d_preset, device=device, dtype=dtype,
                                            offload=offload)
        return cls(engine, cls.DEFAULTS[name], sv3d, device, offload)

    @classmethod
    def from_checkpoint(cls, path, sv3d: "str | Path | SV3DPipeline", preset: str | None = None, device="cpu",
                        dtype: torch.dtype = torch.float32, offload: str | None = None) -> "SV4DPipeline":
        """Load sv4d.safetensors strictly, and SV3D from `sv3d` (a checkpoint path, e.g. sv3d_u.safetensors,
        or an SV3DPipeline); `preset=None` identifies the SV4D checkpoint from its tensors."""
        if not isinstance(sv3d, SV3DPipeline):
            sv3d = SV3DPipeline.from_checkpoint(sv3d, device=device, dtype=dtype, offload=offload)
        preset = preset or identify_preset(path, list(cls.DEFAULTS))
        return cls.from_preset(preset, weights=Path(path), sv3d=sv3d, device=device, dtype=dtype, offload=offload)

    @property
    def num_frames(self) -> int:
        """Input and output frames: T anchors every T - 1 frames after frame 0 (21 for T = 5)."""
        return (self.frames_per_window - 1) * self.frames_per_window + 1

    def reference_views(self, first_frame: torch.Tensor, trajectory: Trajectory, sampler_settings: dict, *,
                        encoding_t: int | None, decoding_t: int | None, seed: int | None, callback) -> torch.Tensor:
        """Step 1: SV3D's orbit of `first_frame` (1 3 H W), input view first, subsampled: `(V + 1) 3 H W` in
        [-1, 1] (9 views for SV4D). `sampler_settings`: num_steps, sampler, sampler_options and progress (SV3D keeps
        its own guidance scales, as the script)."""
        sv3d = self.sv3d
        if sv3d is None:
            raise ValueError("This SV4DPipeline has no SV3D pipeline to make the reference views: build it with one "
                             "(from_preset / from_checkpoint do), or call generate() with the views.")
        cameras = (trajectory.elevations_deg, trajectory.azimuths_deg) if sv3d.takes_cameras else (None, None)
        values = sv3d.conditions(SV3D_NUM_FRAMES, *cameras)  # SV3D's cond_aug 1e-5, as the SV4D script's
        sampler = sv3d.make_sampler(num_frames=SV3D_NUM_FRAMES, **sampler_settings)
        orbit = sv3d.generate(first_frame, values, SV3D_NUM_FRAMES, sampler, decoding_t=decoding_t,
                              encoding_t=encoding_t, generator=generator_for(seed, sv3d.placement.device),
                              callback=callback).decoded
        return self.orbit_views(orbit)

    def orbit_views(self, orbit: torch.Tensor) -> torch.Tensor:
        """An SV3D orbit `n 3 H W` (the input view last) -> the reference views `(V + 1) 3 H W`: rolled by one so
        that the input view comes first, then the V + 1 views minigen.camera.sv4d_subsampled_views(n, V) keeps."""
        orbit = torch.roll(orbit.float().clamp(-1.0, 1.0), 1, dims=0)  # the input view (last) moves first
        return orbit[list(sv4d_subsampled_views(len(orbit), self.views))].cpu()

    def sample_dense_window(self, sampler, forward: Window, backward: Window, noise: torch.Tensor,
                            generator: torch.Generator, callback) -> torch.Tensor:
        """Step 3's sampling: one sampler run whose steps alternate backward (even) and forward (odd) conditioning.

        The latents stay in forward (t v) order; a backward step denoises them with the times reversed and puts
        the result back. The Euler update is element-wise, so this is the script's per-step gather / scatter of
        its latent matrix; the guider's per-frame scales follow the order of each direction, as in the script.
        """
        times_reversed = rearrange(torch.arange(len(noise)), "(t v) -> t v", v=self.views).flip(0).flatten()

        def guided(x, sigma, window: Window):
            sigma_batch = x.new_ones([x.shape[0]]) * sigma  # as BaseSampler.__call__ does
            return sampler.denoise(x, self.denoiser(window), sigma_batch, window.c, window.uc)

        def model(x, sigma):
            if sampler.step % 2:  # the index of the step being taken, kept by the sampler's loop
                return guided(x, sigma, forward)
            return guided(x[times_reversed], sigma, backward)[times_reversed]  # reversing twice restores the order

        def fresh_noise(like):  # only for samplers that inject noise; Euler without churn never calls it
            return torch.randn(like.shape, generator=generator).to(like)

        sigmas = sampler.sigmas(device=noise.device)
        with self.placement.use(self.engine.model):
            return sampler.sample(model, sampler.start(noise, sigmas), sigmas, fresh_noise,
                                  callback or (lambda *args: None))

    @torch.inference_mode()
    def __call__(
        self,
        video,  # uint8 [frames, H, W, 3] or a path (minigen.io.read_video): the first 21 frames are used
        *,
        num_steps: int | None = None,  # sampler steps of every pass, SV3D's included (default 20)
        elevations_deg=None,  # one number or one per SV3D view (21), degrees above the horizon (default 10)
        azimuths_deg=None,  # 21 SV3D views, degrees, going round in order (default: a full turn, the input last)
        preprocess: bool | None = None,  # frame the object first, one box for all frames (default: on, the script's)
        image_size: int | None = None,  # with preprocess: the frames' side (default: the trained 576)
        image_frame_ratio: float | None = None,  # with preprocess: the object's share of the frame (default 0.917)
        remove_bg: bool = False,  # with preprocess: cut each frame out with rembg first (the script's remove_bg)
        rembg_model_path=None,  # with remove_bg: the segmentation model file (no download)
        seed: int | None = 23,  # the script's; None draws a random seed
        cfg: float | None = None,  # the spatiotemporal guider's largest scale (the script's cfg, default 2.0)
        min_cfg: float | None = None,  # its smallest scale (default 1.0)
        sampler: str | type | None = None,  # a minigen sampler or its name, every pass (default: Euler's)
        sampler_options: dict | None = None,  # e.g. {"s_churn": 1.0}
        encoding_t: int | None = 8,  # frames per call of the conditioners' VAE encoders
        decoding_t: int | None = 4,  # frames per decoder call
        callback=None,  # callback(x, denoised, sigma, step) after every sampler step of every pass
        progress: bool = True,
    ) -> np.ndarray:
        """The 8 novel-view videos as uint8 `[8, 21, H, W, 3]` (view order of SV4D_SUBSAMPLED_VIEWS[1:])."""
        check_count("encoding_t", encoding_t)
        check_count("decoding_t", decoding_t)
        framing = {"preprocess": preprocess, "image_size": image_size, "image_frame_ratio": image_frame_ratio,
                   "remove_bg": remove_bg, "rembg_model_path": rembg_model_path}
        frames = self.input_frames(video, keep=self.num_frames, needed=self.num_frames, framing=framing)  # 21 3 H W
        trajectory = self.cameras(elevations_deg, azimuths_deg, SV3D_NUM_FRAMES)
        settings = {"num_steps": num_steps, "sampler": sampler, "sampler_options": sampler_options,
                    "progress": progress}
        views = self.reference_views(frames[:1], trajectory, settings, encoding_t=encoding_t, decoding_t=decoding_t,
                                     seed=seed, callback=callback)
        sample = self.generate(frames, views, sv4d_camera_inputs(trajectory, self.frames_per_window, self.views),
                               self.make_sampler(cfg=cfg, min_cfg=min_cfg, **settings), encoding_t=encoding_t,
                               decoding_t=decoding_t, generator=generator_for(seed, "cpu"), callback=callback,
                               progress=progress)
        return self.novel_view_videos(sample.images)

    @torch.inference_mode()
    def generate(self, frames: torch.Tensor, reference_views: torch.Tensor, cameras: dict, sampler, *,
                 encoding_t: int | None = None, decoding_t: int | None = None,
                 generator: torch.Generator | None = None, noise: Sequence[WindowNoise] | None = None,
                 callback=None, progress: bool = False) -> MultiviewSample:
        """Steps 2 and 3 on tensors: the input video `frames` (`num_frames 3 H W` in [-1, 1]), SV3D's subsampled
        `reference_views` (`(V + 1) 3 H W`, the input view first; step 1's result) and the conditioner's camera
        inputs (minigen.camera.sv4d_camera_inputs). `noise`: one WindowNoise per pass (the anchors, then each
        dense window) to replay instead of drawing from `generator`."""
        T, num_frames = self.frames_per_window, self.num_frames
        if len(frames) != num_frames or len(reference_views) != self.views + 1:
            raise ValueError(f"SV4D takes {num_frames} frames and {self.views + 1} reference views, got "
                             f"{len(frames)} and {len(reference_views)}.")
        generator = generator_for(None, "cpu") if generator is None else generator
        anchor_times, starts = sv4d_schedule(T)
        noise = noise_per_pass(noise, 1 + len(starts))
        height, width = frames.shape[-2:]

        images = torch.zeros(num_frames, self.views + 1, *frames.shape[1:])  # t v 3 H W, the image matrix
        images[0] = reference_views
        images[:, 0] = frames

        def conditioning(times: torch.Tensor, views_at: int, augmentation_noise) -> Window:
            return self.window_conditioning(frames[times], images[views_at, 1:], cameras, generator, encoding_t,
                                            augmentation_noise=augmentation_noise)

        anchors = torch.tensor(anchor_times)
        start = self.start_noise(height, width, generator, noise[0].start)
        latents = self.sample_window(sampler, conditioning(anchors, 0, noise[0].augmentation), start, callback)
        windows = [self.window_sample(anchors, latents, decoding_t)]
        images[anchors, 1:] = windows[-1].images

        for t0, drawn in zip(tqdm(starts, desc="SV4D dense windows", disable=not progress), noise[1:], strict=True):
            times = t0 + torch.arange(T)
            forward = conditioning(times, t0, drawn.augmentation)
            backward = conditioning(times.flip(0), t0 + T - 1, drawn.backward_augmentation)
            start = self.start_noise(height, width, generator, drawn.start)
            latents = self.sample_dense_window(sampler, forward, backward, start, generator, callback)
            windows.append(self.window_sample(times, latents, decoding_t))
            images[times, 1:] = windows[-1].images  # anchors and, for t0 = 0, SV3D's views too
        return MultiviewSample(images, windows)


class SV4D2Pipeline(MultiviewVideoPipeline):
    """SV4D 2.0: a video -> 4 (the 8-view model: 8) novel-view videos of as many frames, autoregressively.

    The flow of simple_video_sample_4d2.py: no SV3D and no anchors. Windows of T times (12; 5 for the 8-view
    model) start every T frames (every T - 1 for the 8-view model, so consecutive windows share one time), the
    last one moved back to end on the last frame. Each window is one pass with cond_motion = the input frames
    at its times and cond_view = the views the matrix holds at its first time: for the first window nothing yet
    (cond_view zeroed, image_only_indicator 0), for later ones the views the previous window generated there.
    Each decoded window overwrites its times in the matrix. Where the script fails, minigen goes on (see
    `window_starts` and docs/differences.md): from 2T frames on, windows share a time as the 8-view model's do
    (the script crashes), and the 8-view model's trailing frames get a last window (the script drops them).
    """

    DEFAULTS = {
        # the script picks guider 2, LinearPredictionGuider, which ignores its min_cfg 2.0 (min_scale stays 1.0)
        "sv4d2": MultiviewDefaults(num_steps=50, guider=LinearPredictionGuider, cfg=2.0, image_frame_ratio=0.9),
        "sv4d2_8views": MultiviewDefaults(num_steps=50, guider=SpatiotemporalPredictionGuider, cfg=2.5,
                                          min_cfg=1.5, camera_model="sv4d2_8views", window_overlap=1,
                                          image_frame_ratio=0.9),
        # the trained course model (recipe tiny_sv4d2): 3 times x 4 views at 64x64, trained on renders as they come
        "tiny_sv4d2": MultiviewDefaults(num_steps=16, guider=LinearPredictionGuider, cfg=2.0, image_size=64,
                                        preprocess=False),
    }

    @torch.inference_mode()
    def __call__(
        self,
        video,  # uint8 [frames, H, W, 3] or a path (minigen.io.read_video)
        *,
        num_frames: int | None = None,  # frames used from the start of the video (default: up to the script's 21)
        num_steps: int | None = None,  # sampler steps per window (default 50)
        elevations_deg=None,  # one number or one per view (input view first), degrees, relative to the input's
        azimuths_deg=None,  # one per view (input view first), degrees, going round in order (default: script's)
        preprocess: bool | None = None,  # frame the object first, one box for all frames (default: on, the script's)
        image_size: int | None = None,  # with preprocess: the frames' side (default: the trained 576)
        image_frame_ratio: float | None = None,  # with preprocess: the object's share of the frame (default 0.9)
        remove_bg: bool = False,  # with preprocess: cut each frame out with rembg first (the script's remove_bg)
        rembg_model_path=None,  # with remove_bg: the segmentation model file (no download)
        seed: int | None = 23,  # the script's; None draws a random seed
        cfg: float | None = None,  # the guider's largest scale (the script's cfg: 2.0; 8-view model 2.5)
        min_cfg: float | None = None,  # its smallest scale (default 1.0; 8-view model 1.5)
        sampler: str | type | None = None,  # a minigen sampler or its name (default: the script's Euler)
        sampler_options: dict | None = None,  # e.g. {"s_churn": 1.0}
        encoding_t: int | None = 8,  # frames per call of the conditioners' VAE encoders
        decoding_t: int | None = 4,  # frames per decoder call
        callback=None,  # callback(x, denoised, sigma, step) after every sampler step of every window
        progress: bool = True,
    ) -> np.ndarray:
        """The novel-view videos as uint8 `[V, num_frames, H, W, 3]`."""
        check_count("num_frames", num_frames)
        check_count("encoding_t", encoding_t)
        check_count("decoding_t", decoding_t)
        T = self.frames_per_window
        if num_frames is not None and num_frames < T:
            raise ValueError(f"num_frames={num_frames}: one pass covers {T} times, so at least {T} are needed.")
        framing = {"preprocess": preprocess, "image_size": image_size, "image_frame_ratio": image_frame_ratio,
                   "remove_bg": remove_bg, "rembg_model_path": rembg_model_path}
        frames = self.input_frames(video, keep=num_frames or self.defaults.num_frames, needed=num_frames or T,
                                   framing=framing, say_dropped=num_frames is None)  # t 3 H W
        trajectory = self.cameras(elevations_deg, azimuths_deg, self.views + 1)
        sampler = self.make_sampler(num_steps, cfg=cfg, min_cfg=min_cfg, sampler=sampler,
                                    sampler_options=sampler_options, progress=progress)
        sample = self.generate(frames, sv4d2_camera_inputs(trajectory, num_times=self.frames_per_window), sampler,
                               encoding_t=encoding_t, decoding_t=decoding_t, generator=generator_for(seed, "cpu"),
                               callback=callback, progress=progress)
        return self.novel_view_videos(sample.images)

    @torch.inference_mode()
    def generate(self, frames: torch.Tensor, cameras: dict, sampler, *, encoding_t: int | None = None,
                 decoding_t: int | None = None, generator: torch.Generator | None = None,
                 noise: Sequence[WindowNoise] | None = None, given_views: dict | None = None, callback=None,
                 progress: bool = False) -> MultiviewSample:
        """The flow on tensors: the input video `frames` (`t 3 H W` in [-1, 1], at least T of them) and the
        conditioner's camera inputs (minigen.camera.sv4d2_camera_inputs, the novel views relative to the input's).
        `noise`: one WindowNoise per window to replay instead of drawing from `generator`. `given_views[t0]`
        (`V 3 H W`): the views the window starting at t0 reads instead of those the windows before it made, e.g.
        the renderer's truth, to tell the error a window inherits from the error it makes (notebook 09)."""
        T = self.frames_per_window
        if len(frames) < T:
            raise ValueError(f"One pass covers {T} times, so at least {T} frames are needed, got {len(frames)}.")
        generator = generator_for(None, "cpu") if generator is None else generator
        starts = window_starts(len(frames), T, T - self.defaults.window_overlap)
        noise = noise_per_pass(noise, len(starts))
        given_views = dict(given_views or {})
        if unknown := sorted(set(given_views) - set(starts[1:])):
            raise ValueError(f"given_views at times {unknown}: the windows read views at {starts[1:]} (the first "
                             "reads none).")

        images = torch.zeros(len(frames), self.views + 1, *frames.shape[1:])  # t v 3 H W; no views at first
        images[:, 0] = frames
        windows = []
        for t0, drawn in zip(tqdm(starts, desc="SV4D 2.0 windows", disable=not progress), noise, strict=True):
            times = t0 + torch.arange(T)
            views = given_views.get(t0, images[t0, 1:])
            window = self.window_conditioning(frames[times], views, cameras, generator, encoding_t,
                                              with_views=t0 > 0, augmentation_noise=drawn.augmentation)
            start = self.start_noise(*frames.shape[-2:], generator, drawn.start)
            windows.append(self.window_sample(times, self.sample_window(sampler, window, start, callback), decoding_t))
            images[times, 1:] = windows[-1].images  # later windows overwrite the times they share
        return MultiviewSample(images, windows)
