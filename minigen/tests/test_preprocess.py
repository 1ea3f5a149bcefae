"""Object preparation: alpha / uniform / rembg cut-outs, centring with image_frame_ratio, white compositing.

The rembg test runs rembg for real, offline, with a tiny ONNX "segmentation model" this test exports.
"""

import warnings

import numpy as np
import pytest
import torch

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
    out = preprocess.prepare_object_image(photo(), size=32, image_frame_ratio=0.5)
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
    with pytest.raises(ValueError, match="uint8 image"):
        preprocess.prepare_object_image(np.zeros((10, 10), np.float32))
    with pytest.raises(ValueError, match="background must be"):
        preprocess.object_alpha(photo(), background="magic")
    with pytest.raises(ValueError, match="image_frame_ratio"):
        preprocess.centre_object(preprocess.uniform_background_alpha(photo()), image_frame_ratio=1.5)
