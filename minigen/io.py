"""Reading and writing images, videos (mp4, gif), frame folders and multi-view grids.

Arrays are uint8 `[H, W, C]` for an image, `[T, H, W, C]` for a video and `[V, T, H, W, C]` for
multi-view videos, as the pipelines return them. Writers create missing folders and never overwrite
an existing file unless `overwrite=True`. Built on imageio (mp4 through imageio-ffmpeg).
"""

import glob
from pathlib import Path

import imageio.v3 as iio
import numpy as np
from einops import rearrange

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
VIDEO_SUFFIXES = (".mp4", ".gif", ".webm", ".mov")


def _as_uint8_frames(frames, ndim: int, what: str) -> np.ndarray:
    frames = np.asarray(frames)
    if frames.dtype != np.uint8:
        raise ValueError(f"{what} must be uint8 (0-255), got {frames.dtype}; convert with minigen.io.to_uint8.")
    if frames.ndim != ndim or frames.shape[-1] not in (1, 3, 4):
        layout = {3: "[H, W, C]", 4: "[T, H, W, C]", 5: "[V, T, H, W, C]"}[ndim]
        raise ValueError(f"{what} must have shape {layout} with C in 1, 3, 4; got {list(frames.shape)}.")
    return frames


def to_uint8(images) -> np.ndarray:
    """Map float images in [-1, 1] (the models' range) to uint8 [0, 255]; values outside are an error."""
    images = np.asarray(images, dtype=np.float32)
    if images.min() < -1.001 or images.max() > 1.001:
        raise ValueError(f"Expected values in [-1, 1], got [{images.min():.3f}, {images.max():.3f}].")
    return np.round((np.clip(images, -1, 1) + 1) * 127.5).astype(np.uint8)


def _output_path(path, overwrite: bool, suffixes: tuple[str, ...]) -> Path:
    path = Path(path)
    if path.suffix.lower() not in suffixes:
        raise ValueError(f"Cannot write {path.name}: expected one of {', '.join(suffixes)}.")
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists; pass overwrite=True to replace it, or choose another name.")
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def read_image(path, keep_alpha: bool = False) -> np.ndarray:
    """One image as uint8 [H, W, 3] ([H, W, 4] with keep_alpha and an alpha channel)."""
    image = iio.imread(Path(path))
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=-1)
    if image.shape[-1] == 4 and not keep_alpha:
        image = image[..., :3]
    return image.astype(np.uint8)


def read_video(source) -> np.ndarray:
    """Frames as uint8 [T, H, W, 3] from a video file (mp4, gif...), a folder of images or a glob pattern."""
    source = str(source)
    if Path(source).is_dir():
        files = sorted(p for p in Path(source).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    elif any(c in source for c in "*?["):
        files = sorted(Path(p) for p in glob.glob(source))
    elif Path(source).is_file():
        frames = iio.imread(source, index=None)
        return np.stack([read_frame[..., :3] for read_frame in frames]).astype(np.uint8)
    else:
        raise FileNotFoundError(f"No video, image folder or pattern at {source}.")
    if not files:
        raise FileNotFoundError(f"No image files in {source}.")
    frames = [read_image(file) for file in files]
    if len({frame.shape for frame in frames}) > 1:
        raise ValueError(f"The frames in {source} have different sizes; resize them to one size first.")
    return np.stack(frames)


def write_image(image, path, overwrite: bool = False) -> Path:
    path = _output_path(path, overwrite, IMAGE_SUFFIXES)
    iio.imwrite(path, _as_uint8_frames(image, 3, "An image"))
    return path


def write_video(frames, path, fps: float = 7, overwrite: bool = False) -> Path:
    """Write [T, H, W, C] uint8 frames as mp4 or gif (chosen by the file's suffix)."""
    frames = _as_uint8_frames(frames, 4, "Video frames")
    path = _output_path(path, overwrite, VIDEO_SUFFIXES)
    if path.suffix.lower() == ".gif":
        iio.imwrite(path, frames, duration=1000 / fps, loop=0)
    else:
        # libx264 needs even sizes; macro_block_size=1 keeps the frames exactly as they are
        iio.imwrite(path, frames, fps=fps, codec="libx264", macro_block_size=1, plugin="FFMPEG")
    return path


def views_grid(videos) -> np.ndarray:
    """Multi-view videos [V, T, H, W, C] as one video with the views side by side: [T, H, V*W, C]."""
    videos = _as_uint8_frames(videos, 5, "Multi-view videos")
    return rearrange(videos, "v t h w c -> t h (v w) c")


def write_grid(videos, path, fps: float = 7, overwrite: bool = False) -> Path:
    """Write multi-view videos side by side (views across, time as the video's frames), like the reference."""
    return write_video(views_grid(videos), path, fps=fps, overwrite=overwrite)
