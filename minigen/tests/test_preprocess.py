"""Object preparation: alpha / uniform / rembg cut-outs, centring with image_frame_ratio, white compositing,
and the SV4D video framing with one box for all frames.

The expected pixels are worked out by hand from the reference scripts' arithmetic (int() for the square's
side, side // 2 - h // 2 for the paste, truncation to uint8); the sizes are chosen so that the final LANCZOS
resize is the identity. One rembg test runs rembg for real, offline, with a tiny ONNX "segmentation model"
this test exports; the others spy on rembg's calls.
"""

import warnings

import numpy as np
import pytest
import torch
from PIL import Image

from minigen import preprocess


def photo(height=60, width=80, box=(10, 30, 20, 60), colour=(200, 40, 40), background=(255, 255, 255)):
    """A uniform background with one coloured rectangle rows box[0]:box[1], cols box[2]:box[3]."""
    image = np.empty((height, width, 3), np.uint8)
    image[:] = background
    top, bottom, left, right = box
    image[top:bottom, left:right] = colour
    return image


class DarkIsForeground(torch.nn.Module):
    """A stand-in for U^2-Net: foreground probability = how far a pixel is from the (white) background."""

    def forward(self, x):  # x: 1 3 320 320, normalised like ImageNet
        return (2.0 - x.mean(dim=1, keepdim=True)).clamp(min=0)  # 1 1 320 320


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    pytest.importorskip("onnx", reason="exporting the test model needs the onnx package (the [dev] extra)")
    pytest.importorskip("rembg")
    path = tmp_path_factory.mktemp("rembg") / "dark_is_foreground.onnx"
    with warnings.catch_warnings():  # the TorchScript exporter (no onnxscript needed) warns it is deprecated
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(DarkIsForeground(), torch.zeros(1, 3, 320, 320), str(path), input_names=["input"],
                          output_names=["mask"], dynamo=False)
    return path


def test_uniform_background_cut():
    rgba = preprocess.uniform_background_alpha(photo())
    assert rgba[..., 3].sum() == 255 * 20 * 40
    assert rgba[15, 25, 3] == 255 and rgba[0, 0, 3] == 0


def test_busy_border_is_not_taken_for_uniform():
    busy = np.random.default_rng(0).integers(0, 256, (40, 40, 3), dtype=np.uint8)
    with pytest.raises(ValueError, match="not a uniform colour"):
        preprocess.uniform_background_alpha(busy)


def test_centre_object_respects_image_frame_ratio():
    rgba = preprocess.uniform_background_alpha(photo())  # box 20 x 40
    square = preprocess.centre_object(rgba, image_frame_ratio=0.8)
    assert square.shape == (50, 50, 4)  # 40 / 0.8
    rows, cols = np.nonzero(square[..., 3])
    assert (rows.min() + rows.max()) / 2 == pytest.approx(24.5, abs=1) and cols.max() - cols.min() + 1 == 40
    assert preprocess.centre_object(rgba).shape == (60, 60, 4)  # no ratio: the image's height
    with pytest.raises(ValueError, match="fully transparent"):
        preprocess.centre_object(np.zeros((8, 8, 4), np.uint8))


def test_prepare_object_image_gives_a_white_background():
    out = preprocess.prepare_object_image(photo(), size=32, image_frame_ratio=0.5, background="uniform")
    assert out.shape == (32, 32, 3) and out.dtype == np.uint8
    assert (out[0, 0] == 255).all() and (out[-1, -1] == 255).all()  # corners white
    assert out[16, 16, 0] > 150 and out[16, 16, 1] < 100  # the red object in the middle


def test_alpha_images_keep_their_alpha():
    rgba = np.zeros((20, 20, 4), np.uint8)
    rgba[5:15, 5:15] = (0, 0, 255, 255)
    out = preprocess.prepare_object_image(rgba, size=(10, 10))
    assert np.abs(out[5, 5].astype(int) - (0, 0, 255)).max() <= 16 and (out[0, 0] == 255).all()


def test_rembg_runs_offline_with_a_local_model(tiny_model, monkeypatch):
    image = photo(box=(20, 40, 10, 30), colour=(30, 30, 30))
    rgba = preprocess.remove_background(image, model_path=tiny_model)
    assert rgba.shape == (60, 80, 4)
    assert rgba[30, 20, 3] > 200 and rgba[5, 70, 3] < 50
    monkeypatch.setenv(preprocess.MODEL_PATH_VARIABLE, str(tiny_model))
    cut = preprocess.object_alpha(image, background="rembg")
    np.testing.assert_array_equal(cut, rgba)


def test_missing_model_gives_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.delenv(preprocess.MODEL_PATH_VARIABLE, raising=False)
    with pytest.raises(FileNotFoundError, match="model_path"):
        preprocess.remove_background(photo(), model_path=tmp_path / "missing.onnx")


def test_bad_input():
    with pytest.raises(ValueError, match=r"image must be uint8 \[H, W, C\] with C in 3, 4, got float32"):
        preprocess.prepare_object_image(np.zeros((10, 10), np.float32))
    with pytest.raises(ValueError, match="background must be"):
        preprocess.object_alpha(photo(), background="magic")
    with pytest.raises(ValueError, match="image_frame_ratio"):
        preprocess.centre_object(preprocess.uniform_background_alpha(photo()), image_frame_ratio=1.5)


@pytest.fixture
def rembg_spy(monkeypatch, tmp_path):
    """Replace rembg's session and remove() by a spy: it records each call and cuts out the non-white pixels."""
    rembg = pytest.importorskip("rembg")
    calls = []

    def remove(picture, session, alpha_matting):
        calls.append({"size": picture.size, "mode": picture.mode, "alpha_matting": alpha_matting})
        rgb = np.asarray(picture.convert("RGB"))
        alpha = np.where(rgb.min(axis=-1) < 250, 255, 0).astype(np.uint8)
        return Image.fromarray(np.dstack([rgb, alpha]))

    monkeypatch.setattr(rembg, "new_session", lambda *args, **kwargs: "session")
    monkeypatch.setattr(rembg, "remove", remove)
    model = tmp_path / "u2net.onnx"
    model.write_bytes(b"never loaded")
    monkeypatch.setenv(preprocess.MODEL_PATH_VARIABLE, str(model))
    return calls


def test_composite_truncates_like_the_scripts():
    soft = np.array([[[100, 100, 100, 50], [0, 0, 0, 0], [10, 20, 30, 255]]], np.uint8)
    # 100 * 50/255 + 255 * (1 - 50/255) = 224.6: the scripts' astype(uint8) gives 224, rounding 225
    assert preprocess.composite_on_white(soft).tolist() == [[[224] * 3, [255] * 3, [10, 20, 30]]]


def test_sv3d_framing_by_hand():
    rgba = np.zeros((10, 10, 4), np.uint8)
    rgba[2:5, 3:9] = (0, 0, 255, 255)  # the object's box: 3 rows x 6 columns
    rgba[2, 3] = (100, 100, 100, 50)  # a soft corner, still inside the box (alpha > 0)
    expected = np.full((8, 8, 3), 255, np.uint8)  # side int(6 / 0.75) = 8, paste at 8//2 - 3//2 = 3, 8//2 - 6//2 = 1
    expected[3:6, 1:7] = (0, 0, 255)
    expected[3, 1] = 224
    out = preprocess.prepare_object_image(rgba, size=8, image_frame_ratio=0.75)  # 8 -> 8: LANCZOS is the identity
    np.testing.assert_array_equal(out, expected)
    out = preprocess.prepare_object_image(rgba, size=10)  # no ratio: a square of the image's height, 10
    assert (out[4:7, 2:8] != 255).any(axis=-1).all() and (out[:4] == 255).all() and (out[:, :2] == 255).all()
    # side int(6 / 0.8) = 7 (rounding would give 8): paste at 3 - 1 = 2, 3 - 3 = 0
    np.testing.assert_array_equal(preprocess.centre_object(rgba, image_frame_ratio=0.8)[2:5, 0:6], rgba[2:5, 3:9])


def test_an_opaque_rgba_uses_its_alpha_without_rembg(rembg_spy):
    opaque = np.zeros((16, 16, 4), np.uint8)
    opaque[..., :3], opaque[..., 3] = 255, 255  # white, fully opaque: the whole image is the object
    opaque[6:10, 6:10, :3] = (200, 40, 40)
    out = preprocess.prepare_object_image(opaque, size=32, image_frame_ratio=0.5)  # side int(16 / 0.5) = 32
    assert rembg_spy == []
    np.testing.assert_array_equal(out[8:24, 8:24], opaque[..., :3])  # pasted at 16 - 8, unchanged
    assert out[6:10, 6:10].tolist() == [[[255] * 3] * 4] * 4  # the white padding


def test_an_rgb_photo_is_shrunk_to_768_and_cut_out_with_alpha_matting(rembg_spy):
    image = photo(height=800, width=1000, box=(300, 500, 400, 700))  # 200 x 300 box
    out = preprocess.prepare_object_image(image, size=64, image_frame_ratio=0.5)  # "auto": no alpha -> rembg
    assert rembg_spy == [{"size": (768, 614), "mode": "RGB", "alpha_matting": True}]  # 800 * 768 / 1000 = 614.4
    assert out.shape == (64, 64, 3) and (out[0, 0] == 255).all() and out[32, 32, 0] > 150
    preprocess.prepare_object_image(image, size=64, alpha_matting=False, image_frame_ratio=0.5)
    assert rembg_spy[-1]["alpha_matting"] is False
    rembg_spy.clear()
    preprocess.prepare_object_image(image, size=64, image_frame_ratio=0.5, background="uniform")  # explicit only
    assert rembg_spy == []


def test_video_framing_by_hand():
    frames = np.full((2, 10, 10, 3), 255, np.uint8)
    frames[0, 2, 6] = (10, 10, 10)
    frames[1, 4, 5] = (248, 249, 250)  # channel mean 249 <= 250: object, not background
    frames[1, 0, 0] = (250, 251, 252)  # mean 251: background
    # one box for both: rows 2..4, cols 5..6; half side = largest distance from the centre (5, 5) = 7 - 5 = 2,
    # 5 - 2 = 3 -> 3; crop rows 2:8, cols 2:8; side int(6 / 0.8) = 7 (rounding gives 8); paste at 3 - 3 = 0
    out = preprocess.prepare_object_video(frames, image_size=7, image_frame_ratio=0.8)
    expected = np.full((2, 7, 7, 3), 255, np.uint8)
    expected[0, 0, 4] = 10
    expected[1, 2, 3] = (248, 249, 250)
    np.testing.assert_array_equal(out, expected)


def test_video_framing_truncates_soft_alpha_by_hand():
    frames = np.zeros((1, 8, 8, 4), np.uint8)  # transparent black
    frames[0, 1, 2] = (100, 100, 100, 50)
    frames[0, 6, 6] = (0, 0, 0, 0)  # transparent: not part of the box
    # box rows 1..1, cols 2..2: half side max(4 - 1, 4 - 2, 2 - 4, 3 - 4) = 3, crop 1:7, side int(6 / 1.0) = 6
    out = preprocess.prepare_object_video(frames, image_size=6, image_frame_ratio=1.0)
    expected = np.full((1, 6, 6, 3), 255, np.uint8)
    expected[0, 0, 1] = 224  # truncated, not rounded to 225
    np.testing.assert_array_equal(out, expected)


def dark_square_video(columns, rows=(28, 36), size=64):
    """White frames with a dark square at rows[0]:rows[1] and, in frame i, columns[i]:columns[i] + 8."""
    frames = np.full((len(columns), size, size, 3), 255, np.uint8)
    for frame, left in zip(frames, columns, strict=True):
        frame[rows[0]:rows[1], left:left + 8] = 20
    return frames


def dark_centre(frame) -> tuple[float, float]:
    """Centroid (row, column) of the darkness (255 - mean) of a frame."""
    weight = 255.0 - frame.mean(axis=-1)
    rows, cols = np.indices(weight.shape)
    return (rows * weight).sum() / weight.sum(), (cols * weight).sum() / weight.sum()


def test_video_framing_keeps_the_motion():
    frames = dark_square_video(columns=[8, 36])  # column centroids 11.5, then 39.5
    # one box: columns 8..44, half side 32 - 8 = 24 about the centre 32, side int(48 / 0.75) = 64, pasted at
    # 32 - 24 = 8 = where the crop starts, so the 64 canvas is the frame; doubled to 128
    out = preprocess.prepare_object_video(frames, image_size=128, image_frame_ratio=0.75)
    (row0, col0), (row1, col1) = dark_centre(out[0]), dark_centre(out[1])
    # input pixel i covers output pixels 2i and 2i + 1: a centroid at c moves to 2c + 0.5
    assert col0 == pytest.approx(2 * 11.5 + 0.5, abs=0.25) and col1 == pytest.approx(2 * 39.5 + 0.5, abs=0.25)
    assert row0 == pytest.approx(row1) == pytest.approx(2 * 31.5 + 0.5, abs=0.25)
    # framed alone, frame 1 gets half side 12, side 32, and its centroid lands at 4 * (39.5 - 16) + 1.5 = 95.5
    alone = preprocess.prepare_object_video(frames[1:], image_size=128, image_frame_ratio=0.75)
    assert dark_centre(alone[0])[1] == pytest.approx(95.5, abs=0.25)


def test_the_object_fills_image_frame_ratio_of_the_frame_on_pure_white():
    frames = dark_square_video(columns=[12], rows=(22, 42))
    frames[0, 22:42, 12:52] = 20  # 20 x 40, centred: the box's side is 40
    out = preprocess.prepare_object_video(frames, image_size=100, image_frame_ratio=0.8)  # 40 / 50 of the frame
    widths = (out[0].mean(axis=-1) < 128).sum(axis=1)
    assert widths.max() == 80  # 0.8 x 100, to the pixel
    # the object covers rows 30..69, columns 10..89; LANCZOS (3 input pixels = 6 output pixels) reaches 6 further
    white = np.ones((100, 100), bool)
    white[24:76, 4:96] = False
    assert (out[0][white] == 255).all()


def test_video_remove_bg_cuts_rgb_frames_with_alpha_matting(rembg_spy):
    frames = dark_square_video(columns=[16, 40])
    out = preprocess.prepare_object_video(frames, image_size=64, image_frame_ratio=0.5, remove_bg=True)
    assert [call["alpha_matting"] for call in rembg_spy] == [True, True] and out.shape == (2, 64, 64, 3)
    rgba = np.concatenate([frames, np.full(frames.shape[:-1] + (1,), 255, np.uint8)], axis=-1)
    preprocess.prepare_object_video(rgba, image_size=64, remove_bg=True)
    assert len(rembg_spy) == 2  # RGBA frames keep their alpha


def test_video_bad_input():
    with pytest.raises(ValueError, match="no object to frame"):
        preprocess.prepare_object_video(np.full((2, 8, 8, 3), 255, np.uint8))
    with pytest.raises(ValueError, match=r"video must be uint8 frames \[T, H, W, C\] with C in 3, 4"):
        preprocess.prepare_object_video(np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(ValueError, match="image_frame_ratio"):
        preprocess.prepare_object_video(dark_square_video([8]), image_frame_ratio=1.2)
    with pytest.raises(ValueError, match="image_size"):
        preprocess.prepare_object_video(dark_square_video([8]), image_size=0)
