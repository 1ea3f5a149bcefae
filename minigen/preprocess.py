"""Preparing an object photo for SV3D / SV4D: cut the object out, centre it, put it on white, resize.

The reference sampling scripts (`scripts/sampling/simple_video_sample*.py`) remove the background
with rembg unless the image already has an alpha channel, crop the object's bounding box into a
square whose side is the box's longer side divided by `image_frame_ratio`, centre it, resize and
composite it on white. minigen does the same, and adds a model-free path for photos on a uniform
background. rembg needs its segmentation model on disk: pass `model_path=` or set
MINIGEN_REMBG_MODEL (no download is attempted).
"""

import contextlib
import os
from pathlib import Path

import numpy as np
from PIL import Image

MODEL_PATH_VARIABLE = "MINIGEN_REMBG_MODEL"


def _check_image(image, channels=(3, 4)) -> np.ndarray:
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[-1] not in channels:
        raise ValueError(
            f"Expected a uint8 image [H, W, C] with C in {channels}, got {image.dtype} {list(image.shape)}."
        )
    return image


def has_transparency(image) -> bool:
    image = _check_image(image)
    return image.shape[-1] == 4 and image[..., 3].min() < 255


def uniform_background_alpha(image, tolerance: float = 12.0) -> np.ndarray:
    """RGBA with alpha 0 wherever a pixel is within `tolerance` of the (uniform) border colour.

    Raises if the border is not uniform, since then this simple cut would be wrong.
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


def remove_background(image, model_path=None, alpha_matting: bool = False) -> np.ndarray:
    """RGBA cut-out from rembg with a U^2-Net-style ONNX model on disk (`model_path` or $MINIGEN_REMBG_MODEL)."""
    import rembg  # the [vision] extra; imported here so the rest of minigen does not need it

    rgb = _check_image(image)[..., :3]
    model_path = model_path or os.environ.get(MODEL_PATH_VARIABLE)
    if not model_path or not Path(model_path).is_file():
        raise FileNotFoundError(
            f"No background-removal model file ({model_path or 'none given'}). Download u2net.onnx once, then pass "
            f"model_path= or set {MODEL_PATH_VARIABLE}; or give an image with alpha or on a uniform background."
        )
    model_path = Path(model_path).resolve()
    with _rembg_home(model_path.parent):
        session = rembg.new_session("u2net_custom", model_path=str(model_path))
        cut = rembg.remove(Image.fromarray(rgb), session=session, alpha_matting=alpha_matting)
    return np.asarray(cut.convert("RGBA"))


def object_alpha(image, background: str = "auto", model_path=None, alpha_matting: bool = False) -> np.ndarray:
    """RGBA of the object, by `background`: "alpha" (use the image's), "uniform", "rembg" or "auto".

    "auto" uses the image's own alpha when it has transparency, else a uniform border when there is
    one, else rembg.
    """
    image = _check_image(image)
    if background == "auto":
        if has_transparency(image):
            background = "alpha"
        else:
            with contextlib.suppress(ValueError):
                return uniform_background_alpha(image)
            background = "rembg"
    if background == "alpha":
        if not has_transparency(image):
            raise ValueError("background='alpha' needs an RGBA image with transparent pixels.")
        return image
    if background == "uniform":
        return uniform_background_alpha(image)
    if background == "rembg":
        return remove_background(image, model_path=model_path, alpha_matting=alpha_matting)
    raise ValueError(f"background must be 'auto', 'alpha', 'uniform' or 'rembg', got {background!r}.")


def centre_object(rgba, image_frame_ratio: float | None = None) -> np.ndarray:
    """The object's bounding box centred in a square RGBA canvas.

    The square's side is the box's longer side / image_frame_ratio (so the object fills that fraction
    of the frame), or the image's height when no ratio is given, as in the reference scripts.
    """
    rgba = _check_image(rgba, channels=(4,))
    rows, cols = np.nonzero(rgba[..., 3])
    if rows.size == 0:
        raise ValueError("The image is fully transparent: no object to centre.")
    if image_frame_ratio is not None and not 0 < image_frame_ratio <= 1:
        raise ValueError(f"image_frame_ratio must be in (0, 1], got {image_frame_ratio}.")
    top, left = rows.min(), cols.min()
    height, width = rows.max() - top + 1, cols.max() - left + 1
    side = int(max(height, width) / image_frame_ratio) if image_frame_ratio else rgba.shape[0]
    side = max(side, height, width)
    canvas = np.zeros((side, side, 4), dtype=np.uint8)
    start_row, start_col = side // 2 - height // 2, side // 2 - width // 2
    canvas[start_row:start_row + height, start_col:start_col + width] = rgba[top:top + height, left:left + width]
    return canvas


def composite_on_white(rgba) -> np.ndarray:
    """Blend an RGBA image over a white background: rgb * alpha + (1 - alpha)."""
    rgba = _check_image(rgba, channels=(4,)).astype(np.float32) / 255.0
    rgb = rgba[..., :3] * rgba[..., 3:] + (1.0 - rgba[..., 3:])
    return np.round(rgb * 255).astype(np.uint8)


def prepare_object_image(image, size=576, image_frame_ratio: float | None = None, background: str = "auto",
                         model_path=None, alpha_matting: bool = False) -> np.ndarray:
    """The SV3D / SV4D input: object cut out, centred, resized to `size` (int or (H, W)), on white. uint8 [H, W, 3]."""
    height, width = (size, size) if isinstance(size, int) else size
    square = centre_object(object_alpha(image, background, model_path, alpha_matting), image_frame_ratio)
    resized = np.asarray(Image.fromarray(square).resize((width, height), Image.Resampling.LANCZOS))
    return composite_on_white(resized)
