"""Reading and writing images, videos (mp4, gif), frame folders and multi-view grids.

Arrays are uint8 `[H, W, C]` for an image, `[T, H, W, C]` for a video and `[V, T, H, W, C]` for
multi-view videos, as the pipelines return them. Readers composite transparent pixels on white unless
asked to keep the alpha, and turn undecodable files into one ValueError that names the file. Writers
create missing folders and never overwrite an existing file unless `overwrite=True`. Images and GIFs go
through Pillow, mp4 / webm / mov through imageio-ffmpeg.
"""

import glob
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import torch
from einops import rearrange
from PIL import Image, ImageSequence

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
VIDEO_SUFFIXES = (".mp4", ".gif", ".webm", ".mov")
IMAGE_FILES = "a PNG, JPEG, WebP, BMP or GIF file"  # what the readers expect, for their error messages
VIDEO_FILES = "an MP4, GIF, WebM or MOV file, a folder of images or a glob pattern"


# the layout of a uint8 array by its number of dimensions, for check_uint8's messages
LAYOUTS = {3: "[H, W, C]", 4: "frames [T, H, W, C]", 5: "[V, T, H, W, C]"}


def check_uint8(array, ndim: int, what: str, channels: tuple[int, ...] = (1, 3, 4),
                fix: str = "convert [-1, 1] floats with minigen.io.to_uint8") -> np.ndarray:
    """`array` as a numpy uint8 array of `ndim` dimensions (an image 3, a video 4, multi-view videos 5) whose last,
    C, is in `channels`; otherwise a ValueError that names `what`, the layout expected, what came, and `fix`.

    The one check of every place that takes pixels as they are saved: the writers here, the pipelines' inputs,
    minigen.preprocess and the clip widgets.
    """
    array = np.asarray(array)
    if array.dtype != np.uint8 or array.ndim != ndim or array.shape[-1] not in channels:
        layout = LAYOUTS[ndim]
        layout = layout.replace("C]", f"{channels[0]}]") if len(channels) == 1 else \
            f"{layout} with C in {', '.join(map(str, channels))}"
        raise ValueError(f"{what} must be uint8 {layout}, got {array.dtype} {list(array.shape)}; {fix}.")
    return array


def to_uint8(images, mode: str = "round") -> np.ndarray:
    """Float images in [-1, 1] (the models' range; numpy or torch, channels last) as uint8 in [0, 255].

    mode="round": each value to the nearest level; values outside [-1, 1] are an error (nothing is clamped
    silently). mode="truncate": the reference sampling scripts' conversion, which the pipelines use so that their
    frames are the bytes the scripts save: clamp((x + 1) / 2, 0, 1) * 255 in float32, cut down to integers (not
    rounded), a decoder's overshoot beyond [-1, 1] clamped as the scripts clamp it.
    """
    if isinstance(images, torch.Tensor):
        images = images.detach().float().cpu().numpy()
    images = np.asarray(images, dtype=np.float32)
    if mode == "truncate":
        return (np.clip((images + 1.0) / 2.0, 0.0, 1.0) * 255).astype(np.uint8)
    if mode != "round":
        raise ValueError(f"mode must be 'round' or 'truncate' (the reference scripts'), got {mode!r}.")
    if images.min() < -1.001 or images.max() > 1.001:
        raise ValueError(f"Expected values in [-1, 1], got [{images.min():.3f}, {images.max():.3f}].")
    return np.round((np.clip(images, -1, 1) + 1) * 127.5).astype(np.uint8)


def composite_on_white(rgba) -> np.ndarray:
    """Blend an RGBA image over white: rgb * alpha + (1 - alpha), in float64 on [0, 1].

    The result is truncated to uint8, (rgb * 255).astype(uint8), as the reference scripts do (not rounded), so a
    soft edge pixel can be one level darker than rounding would give. The readers use it for transparent files,
    minigen.preprocess for the framed objects.
    """
    rgba = check_uint8(rgba, 3, "An RGBA image", channels=(4,), fix="give it an alpha channel (C = 4) first") / 255.0
    rgb = rgba[..., :3] * rgba[..., 3:] + (1 - rgba[..., 3:])  # float64, as numpy gives the scripts
    return (rgb * 255).astype(np.uint8)


def _output_path(path, overwrite: bool, suffixes: tuple[str, ...]) -> Path:
    path = Path(path)
    if path.suffix.lower() not in suffixes:
        raise ValueError(f"Cannot write {path.name}: expected one of {', '.join(suffixes)}.")
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists; pass overwrite=True to replace it, or choose another name.")
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def _unreadable(path: Path, what: str, expected: str, error: Exception) -> ValueError:
    """One clear error for a file the decoder refused (not an image, truncated, renamed)."""
    reason = (str(error).strip().splitlines() or [type(error).__name__])[0]
    return ValueError(f"Could not read {path.name} as {what} ({reason}): expected {expected}. Check that the file "
                      "is complete and that its suffix matches its contents.")


def _rgba(frame: Image.Image, path: Path) -> np.ndarray:
    """One decoded frame as uint8 [H, W, 4]; alpha 255 where the file has none."""
    if frame.mode.startswith(("I", "F")):
        raise ValueError(f"{path.name} has {frame.mode} pixels (16-bit or float); minigen reads 8-bit images: "
                         "save it as an 8-bit PNG or JPEG.")
    return np.asarray(frame.convert("RGBA"))


def _decode_image(path: Path, all_frames: bool) -> tuple[np.ndarray, bool]:
    """An image file's first frame (every frame with all_frames) as uint8 [T, H, W, 4], and whether it has alpha.

    GIFs always count as having alpha: the reference's read_gif converts every GIF frame to RGBA.
    """
    try:
        with Image.open(path) as image:
            has_alpha, rgba = image.format == "GIF", []
            for frame in ImageSequence.Iterator(image) if all_frames else [image]:  # one object, seeked on
                has_alpha = has_alpha or frame.has_transparency_data
                rgba.append(_rgba(frame, path))  # h w 4
            return np.stack(rgba), has_alpha  # t h w 4
    except (OSError, SyntaxError, EOFError) as error:  # not an image, truncated, unsupported format
        raise _unreadable(path, "an image", IMAGE_FILES, error) from None


def _decode_video(path: Path) -> np.ndarray:
    """An mp4 / webm / mov file's frames as uint8 [T, H, W, 3] (ffmpeg)."""
    try:
        return iio.imread(path, index=None, plugin="FFMPEG")
    except (OSError, RuntimeError, ValueError) as error:
        raise _unreadable(path, "a video", VIDEO_FILES, error) from None


def _flatten(frames: np.ndarray, has_alpha: bool, keep_alpha: bool) -> np.ndarray:
    """[T, H, W, 4] -> itself with keep_alpha (when there is alpha), else [T, H, W, 3] composited on white."""
    if keep_alpha and has_alpha:
        return frames
    if not has_alpha:
        return np.ascontiguousarray(frames[..., :3])
    return np.stack([composite_on_white(frame) for frame in frames])


def read_image(path, keep_alpha: bool = False) -> np.ndarray:
    """One image as uint8 [H, W, 3], transparent pixels composited on white (alpha-weighted).

    With keep_alpha, an image that has alpha (an alpha channel, a transparent palette colour, any GIF)
    comes back as [H, W, 4] instead, for cut-outs. A file that is not a readable image raises ValueError.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"No image file at {path}.")
    frames, has_alpha = _decode_image(path, all_frames=False)
    return _flatten(frames, has_alpha, keep_alpha)[0]


def _frame_files(source: str) -> list[Path]:
    """The image files of a folder, or those matching a glob pattern, sorted by name."""
    if Path(source).is_dir():
        files = sorted(p for p in Path(source).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    else:
        files = sorted(Path(p) for p in glob.glob(source))
    if not files:
        raise FileNotFoundError(f"No image files in {source}.")
    return files


def read_video(source, keep_alpha: bool = False) -> np.ndarray:
    """Frames as uint8 [T, H, W, 3] from a video file (mp4, gif...), a folder of images or a glob pattern.

    Transparent pixels are composited on white. With keep_alpha, a source with alpha comes back as
    [T, H, W, 4] (every frame, alpha 255 where a frame has none): GIFs always, as the reference reads them,
    frames with an alpha channel or a transparent colour; never mp4. The SV4D preprocessing
    (minigen.preprocess.prepare_object_video) frames the object from that alpha.
    """
    source = str(source)
    path = Path(source)
    if path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES + (".gif",):
        return _flatten(*_decode_image(path, all_frames=True), keep_alpha)
    if path.is_file():
        return _decode_video(path)
    if not path.is_dir() and not any(c in source for c in "*?["):
        raise FileNotFoundError(f"No video, image folder or pattern at {source}.")
    decoded = [_decode_image(file, all_frames=False) for file in _frame_files(source)]
    if len({frames.shape for frames, _ in decoded}) > 1:
        raise ValueError(f"The frames in {source} have different sizes; resize them to one size first.")
    frames = np.concatenate([frames for frames, _ in decoded])  # t h w 4
    return _flatten(frames, any(has_alpha for _, has_alpha in decoded), keep_alpha)


def write_image(image, path, overwrite: bool = False) -> Path:
    """Write a uint8 image [H, W, C] as PNG, JPEG, WebP or BMP (chosen by the file's suffix)."""
    path = _output_path(path, overwrite, IMAGE_SUFFIXES)
    iio.imwrite(path, check_uint8(image, 3, "An image"))
    return path


def write_video(frames, path, fps: float = 7, overwrite: bool = False) -> Path:
    """Write [T, H, W, C] uint8 frames as mp4 or gif (chosen by the file's suffix)."""
    frames = check_uint8(frames, 4, "A video")
    path = _output_path(path, overwrite, VIDEO_SUFFIXES)
    if path.suffix.lower() == ".gif":
        iio.imwrite(path, frames, duration=1000 / fps, loop=0)
    else:
        # libx264 needs even sizes; macro_block_size=1 keeps the frames exactly as they are
        iio.imwrite(path, frames, fps=fps, codec="libx264", macro_block_size=1, plugin="FFMPEG")
    return path


def gif_bytes(frames, fps: float = 7, scale: int = 1) -> bytes:
    """[T, H, W, C] uint8 frames as an animated GIF in memory, each pixel repeated `scale` times: what a notebook
    shows with `ipywidgets.Image(value=gif_bytes(frames), format="gif")`, tiny frames enlarged without blur."""
    frames = check_uint8(frames, 4, "A video")
    frames = frames.repeat(scale, axis=1).repeat(scale, axis=2)
    return iio.imwrite("<bytes>", frames, extension=".gif", duration=1000 / fps, loop=0)


def views_grid(videos) -> np.ndarray:
    """Multi-view videos [V, T, H, W, C] as one video with the views side by side: [T, H, V*W, C]."""
    videos = check_uint8(videos, 5, "Multi-view videos")
    return rearrange(videos, "v t h w c -> t h (v w) c")


def write_grid(videos, path, fps: float = 7, overwrite: bool = False) -> Path:
    """Write multi-view videos side by side (views across, time as the video's frames), like the reference."""
    return write_video(views_grid(videos), path, fps=fps, overwrite=overwrite)
