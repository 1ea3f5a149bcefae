"""Preparing an object image (SV3D) or an object video (SV4D, SV4D 2.0): cut out, centre, resize, put on white.

`prepare_object_image` does what `scripts/sampling/simple_video_sample.py` does to an SV3D input: an RGBA
image keeps its own alpha, even a fully opaque one; any other image is shrunk to fit 768 x 768 and cut out
with rembg, alpha matting on. The alpha's bounding box goes into a square of side int(longer side /
image_frame_ratio) (the image's height without a ratio), is resized with LANCZOS and composited on white,
truncating to uint8 as the script does.

`prepare_object_video` does what `preprocess_video` in `scripts/demo/sv4d_helpers.py` does to an SV4D or
SV4D 2.0 input: one box around the object in every frame, squared about the image centre so the object's
motion survives, padded so it fills image_frame_ratio of the frame (the scripts use 0.917 for SV4D and 0.9
for SV4D 2.0), resized to image_size and composited on white. rembg runs only with remove_bg (off in the
scripts).

minigen's own additions: background="uniform", a model-free cut-out for renders on a plain background (not
in the scripts); clear errors where the scripts would crash or crop wrongly; rembg loads its model from
disk only (model_path= or $MINIGEN_REMBG_MODEL, no download).
"""

import contextlib
import os
from pathlib import Path

import numpy as np
from PIL import Image

from .io import check_uint8, composite_on_white

MODEL_PATH_VARIABLE = "MINIGEN_REMBG_MODEL"
REMBG_MAX_SIZE = 768  # the SV3D script shrinks an image to fit 768 x 768 before rembg
WHITE_THRESHOLD = 250  # the SV4D helper: a pixel whose channel mean is <= 250 is not background


def _check_image(image, channels=(3, 4)) -> np.ndarray:
    return check_uint8(image, 3, "An image", channels, fix="minigen.io.read_image(path, keep_alpha=True) reads one")


def _check_video(frames) -> np.ndarray:
    frames = check_uint8(frames, 4, "A video", (3, 4), fix="minigen.io.read_video(path, keep_alpha=True) reads "
                         "them from a file")
    if len(frames) == 0:
        raise ValueError("The video has no frames; give at least one.")
    return frames


def _check_ratio(image_frame_ratio, allow_none: bool = True) -> None:
    if (image_frame_ratio is None and not allow_none) or (image_frame_ratio is not None
                                                           and not 0 < image_frame_ratio <= 1):
        raise ValueError(f"image_frame_ratio must be in (0, 1] (the fraction of the frame the object fills), "
                         f"got {image_frame_ratio}.")


def uniform_background_alpha(image, tolerance: float = 12.0) -> np.ndarray:
    """RGBA with alpha 0 wherever a pixel is within `tolerance` of the (uniform) border colour.

    minigen's model-free cut-out for renders on a plain background. Raises if the border is not uniform,
    since then this simple cut would be wrong.
    """
    rgb = _check_image(image)[..., :3].astype(np.float32)
    border = np.concatenate([rgb[0], rgb[-1], rgb[:, 0], rgb[:, -1]])  # n 3
    if border.std(axis=0).max() > tolerance:
        raise ValueError("The image's border is not a uniform colour; use background='rembg' (with a model file) "
                         "or give an image with an alpha channel.")
    distance = np.abs(rgb - np.median(border, axis=0)).max(axis=-1)
    alpha = np.where(distance > tolerance, 255, 0).astype(np.uint8)
    return np.concatenate([rgb.astype(np.uint8), alpha[..., None]], axis=-1)


@contextlib.contextmanager
def _rembg_home(folder: Path):
    """rembg only loads model files from its home folder: point it at the model's folder for a moment."""
    previous = os.environ.get("U2NET_HOME")
    os.environ["U2NET_HOME"] = str(folder)
    try:
        yield
    finally:
        if previous is None:
            del os.environ["U2NET_HOME"]
        else:
            os.environ["U2NET_HOME"] = previous


def remove_background(image, model_path=None, alpha_matting: bool = True) -> np.ndarray:
    """RGBA cut-out from rembg with a U^2-Net-style ONNX model on disk (`model_path` or $MINIGEN_REMBG_MODEL).

    alpha_matting=True (the scripts' setting) softens the mask's edges; False keeps rembg's hard mask.
    """
    import rembg  # the [vision] extra; imported here so the rest of minigen does not need it

    rgb = _check_image(image)[..., :3]
    model_path = model_path or os.environ.get(MODEL_PATH_VARIABLE)
    if not model_path or not Path(model_path).is_file():
        raise FileNotFoundError(
            f"No background-removal model file ({model_path or 'none given'}). Download u2net.onnx once, then pass "
            f"model_path= or set {MODEL_PATH_VARIABLE}; or pass an RGBA cut-out, or use background='uniform' for a "
            "plain background."
        )
    model_path = Path(model_path).resolve()
    with _rembg_home(model_path.parent):
        session = rembg.new_session("u2net_custom", model_path=str(model_path))
        cut = rembg.remove(Image.fromarray(rgb), session=session, alpha_matting=alpha_matting)
    return np.asarray(cut.convert("RGBA"))


def _shrink_to_fit(image: np.ndarray, max_size: int) -> np.ndarray:
    """PIL's thumbnail (LANCZOS): shrink, keeping the aspect ratio, until both sides are <= max_size."""
    picture = Image.fromarray(image)
    picture.thumbnail((max_size, max_size), Image.Resampling.LANCZOS)
    return np.asarray(picture)


def object_alpha(image, background: str = "auto", model_path=None, alpha_matting: bool = True) -> np.ndarray:
    """RGBA of the object, by `background`: "auto", "alpha", "rembg" or "uniform".

    "auto" is the SV3D script's rule: the image's own alpha when it has an alpha channel (even fully
    opaque), else rembg. "rembg" shrinks the image to fit 768 x 768 first, as the script does, so the
    cut-out may be smaller than the input. "uniform" is minigen's model-free cut for plain backgrounds.
    """
    image = _check_image(image)
    if background == "auto":
        background = "alpha" if image.shape[-1] == 4 else "rembg"
    if background == "alpha":
        if image.shape[-1] != 4:
            raise ValueError("background='alpha' needs an RGBA image [H, W, 4]; read it with "
                             "minigen.io.read_image(path, keep_alpha=True), or use background='rembg'.")
        return image
    if background == "uniform":
        return uniform_background_alpha(image)
    if background == "rembg":
        rgb = _shrink_to_fit(np.ascontiguousarray(image[..., :3]), REMBG_MAX_SIZE)
        return remove_background(rgb, model_path=model_path, alpha_matting=alpha_matting)
    raise ValueError(f"background must be 'auto', 'alpha', 'rembg' or 'uniform', got {background!r}.")


def _paste_centred(crop: np.ndarray, side: int) -> np.ndarray:
    """`crop` [h, w, 4] in the middle of a transparent side x side canvas (top-left at side//2 - h//2, ...)."""
    height, width = crop.shape[:2]
    canvas = np.zeros((side, side, 4), dtype=np.uint8)
    top, left = side // 2 - height // 2, side // 2 - width // 2
    canvas[top:top + height, left:left + width] = crop
    return canvas


def centre_object(rgba, image_frame_ratio: float | None = None) -> np.ndarray:
    """The alpha's bounding box (alpha > 0) centred in a transparent square RGBA canvas.

    The square's side is int(the box's longer side / image_frame_ratio), so the object fills that fraction
    of the frame, or the image's height when no ratio is given, as in the SV3D script.
    """
    rgba = _check_image(rgba, channels=(4,))
    _check_ratio(image_frame_ratio)
    rows, cols = np.nonzero(rgba[..., 3])
    if rows.size == 0:
        raise ValueError("The image is fully transparent: no object to centre.")
    top, left = rows.min(), cols.min()
    height, width = rows.max() - top + 1, cols.max() - left + 1
    side = int(max(height, width) / image_frame_ratio) if image_frame_ratio else rgba.shape[0]
    if side < max(height, width):
        raise ValueError(f"The object ({height} x {width}) does not fit a square of the image's height ({side}); "
                         "pass image_frame_ratio (e.g. 0.85) to size the square from the object.")
    return _paste_centred(rgba[top:top + height, left:left + width], side)


def _resize(rgba: np.ndarray, height: int, width: int) -> np.ndarray:
    return np.asarray(Image.fromarray(rgba).resize((width, height), Image.Resampling.LANCZOS))


def prepare_object_image(image, size=576, image_frame_ratio: float | None = None, background: str = "auto",
                         model_path=None, alpha_matting: bool = True) -> np.ndarray:
    """The SV3D input: object cut out, centred, resized to `size` (int or (H, W)), on white. uint8 [H, W, 3].

    image: uint8 [H, W, 3] or [H, W, 4]; see object_alpha for `background`, centre_object for
    `image_frame_ratio`. With the defaults this is the SV3D script's preprocessing.
    """
    height, width = (size, size) if isinstance(size, int) else size
    square = centre_object(object_alpha(image, background, model_path, alpha_matting), image_frame_ratio)
    return composite_on_white(_resize(square, height, width))


def video_object_box(frames, white_threshold: int = WHITE_THRESHOLD) -> tuple[int, int, int, int]:
    """(top, left, bottom, right), bottom and right exclusive: one box around the object in every frame.

    The object is where alpha > 0 for RGBA frames, and where the channel mean is <= white_threshold for
    RGB frames (which are taken to be on white), as in the SV4D helper.
    """
    frames = _check_video(frames)
    if frames.shape[-1] == 4:
        union = np.logical_or.reduce([frame[..., 3] > 0 for frame in frames])  # h w
    else:
        union = np.logical_or.reduce([frame.mean(axis=-1) <= white_threshold for frame in frames])  # h w
    rows, cols = np.flatnonzero(union.any(axis=1)), np.flatnonzero(union.any(axis=0))
    if rows.size == 0:
        what = "fully transparent" if frames.shape[-1] == 4 else f"white (channel mean > {white_threshold})"
        raise ValueError(f"Every frame is {what}: no object to frame. Pass remove_bg=True to cut the object "
                         "out with rembg, or frames with an alpha channel.")
    return int(rows[0]), int(cols[0]), int(rows[-1]) + 1, int(cols[-1]) + 1


def _square_about_centre(box, height: int, width: int) -> tuple[slice, slice, int]:
    """The crop of a square centred on the image centre that holds `box`: rows, cols and the square's side.

    The half side is the box's largest distance from the centre (height // 2, width // 2); the crop is
    clipped to the image, and the side (2 * half) is what the padding is sized from.
    """
    top, left, bottom, right = box
    centre_row, centre_col = height // 2, width // 2
    half = max(centre_row - top, centre_col - left, bottom - centre_row, right - centre_col)
    first_row, first_col = max(0, centre_row - half), max(0, centre_col - half)
    rows = slice(first_row, first_row + min(height, 2 * half))
    cols = slice(first_col, first_col + min(width, 2 * half))
    return rows, cols, 2 * half


def prepare_object_video(frames, *, image_size: int = 576, image_frame_ratio: float = 0.917,
                         remove_bg: bool = False, rembg_model_path=None) -> np.ndarray:
    """The SV4D / SV4D 2.0 input video: uint8 [N, H, W, 3 or 4] -> [N, image_size, image_size, 3] on white.

    One box for all frames (video_object_box), squared about the image centre, so the object's motion
    and size changes across frames are kept; each frame's crop is padded to a square of side
    int(box side / image_frame_ratio), resized with LANCZOS and composited on white (truncating). The
    scripts use image_frame_ratio 0.917 (SV4D) and 0.9 (SV4D 2.0). remove_bg cuts each RGB frame out with
    rembg (alpha matting on, model from rembg_model_path or $MINIGEN_REMBG_MODEL); RGBA frames keep their
    alpha. Pass exactly the frames to be sampled: the box depends on them.

    Deliberate differences from sv4d_helpers.preprocess_video: the script writes the result to an mp4 and
    reads it back (a lossy round trip, about one level per pixel), minigen returns the frames as they are.
    The script measures the box's column extent from the row centre and vice versa, which only matters
    for non-square frames; minigen measures each axis from its own centre. A frame without any object
    pulls the script's box to the top-left corner; minigen's box ignores it.

    Worth knowing: the script reads every GIF frame as RGBA, so an opaque GIF's box is the whole frame and
    the whole frame shrinks to image_frame_ratio; minigen.io.read_video(path, keep_alpha=True) reads GIFs
    the same way, and mp4 files as RGB (the white-threshold box), as the script does.
    """
    frames = _check_video(frames)
    _check_ratio(image_frame_ratio, allow_none=False)
    if not isinstance(image_size, (int, np.integer)) or image_size < 1:
        raise ValueError(f"image_size must be a positive int (the output's side; 576 as trained), got {image_size!r}.")
    if remove_bg and frames.shape[-1] == 3:
        frames = np.stack([remove_background(frame, rembg_model_path, alpha_matting=True) for frame in frames])
    rows, cols, box_side = _square_about_centre(video_object_box(frames), *frames.shape[1:3])
    side = int(box_side / image_frame_ratio)
    if frames.shape[-1] == 3:  # opaque: the crop is the object, the padding around it becomes white
        frames = np.concatenate([frames, np.full(frames.shape[:-1] + (1,), 255, np.uint8)], axis=-1)
    squares = (_paste_centred(frame[rows, cols], side) for frame in frames)  # each side side 4
    return np.stack([composite_on_white(_resize(square, image_size, image_size)) for square in squares])
