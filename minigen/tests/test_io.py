"""Image and video files: round trips, folders and patterns, alpha on white, no silent overwrite, clear errors."""

import numpy as np
import pytest
import torch
from PIL import Image

from minigen import io


def gradient_video(frames=4, height=16, width=24):
    t, y, x = np.meshgrid(np.arange(frames), np.arange(height), np.arange(width), indexing="ij")
    red, green, blue = (x * 10) % 256, (y * 15) % 256, np.broadcast_to(t * 60 % 256, t.shape)
    return np.stack([red, green, blue], axis=-1).astype(np.uint8)


def test_image_round_trip_and_alpha(tmp_path):
    image = gradient_video()[0]
    path = io.write_image(image, tmp_path / "sub" / "image.png")  # creates the folder
    np.testing.assert_array_equal(io.read_image(path), image)
    rgba = np.concatenate([image, np.full(image.shape[:2] + (1,), 128, np.uint8)], axis=-1)
    io.write_image(rgba, tmp_path / "rgba.png")
    assert io.read_image(tmp_path / "rgba.png").shape[-1] == 3
    assert io.read_image(tmp_path / "rgba.png", keep_alpha=True)[..., 3].max() == 128


@pytest.mark.parametrize("suffix", [".gif", ".mp4"])
def test_video_round_trip(tmp_path, suffix):
    video = gradient_video()
    path = io.write_video(video, tmp_path / f"clip{suffix}", fps=8)
    back = io.read_video(path)
    assert back.shape == video.shape
    assert np.abs(back.astype(int) - video.astype(int)).mean() < 12  # lossy codecs, same picture


def test_frame_folders_and_patterns(tmp_path):
    video = gradient_video()
    for index, frame in enumerate(video):
        io.write_image(frame, tmp_path / "frames" / f"{index:03d}.png")
    np.testing.assert_array_equal(io.read_video(tmp_path / "frames"), video)
    np.testing.assert_array_equal(io.read_video(str(tmp_path / "frames" / "00[0-1].png")), video[:2])
    with pytest.raises(FileNotFoundError):
        io.read_video(tmp_path / "nothing_here.mp4")


def test_existing_files_are_never_overwritten_silently(tmp_path):
    path = io.write_video(gradient_video(), tmp_path / "clip.gif")
    before = path.read_bytes()
    with pytest.raises(FileExistsError, match="overwrite=True"):
        io.write_video(gradient_video(frames=2), path)
    assert path.read_bytes() == before
    io.write_video(gradient_video(frames=2), path, overwrite=True)
    assert io.read_video(path).shape[0] == 2


def test_multi_view_grid_puts_views_side_by_side(tmp_path):
    videos = np.stack([gradient_video(frames=3), 255 - gradient_video(frames=3)])  # V=2
    grid = io.views_grid(videos)
    assert grid.shape == (3, 16, 48, 3)
    np.testing.assert_array_equal(grid[:, :, 24:], videos[1])
    assert io.write_grid(videos, tmp_path / "grid.gif").exists()


def test_bad_arrays_are_refused_with_the_expected_layout(tmp_path):
    with pytest.raises(ValueError, match=r"\[T, H, W, C\]"):
        io.write_video(np.zeros((16, 16, 3), np.uint8), tmp_path / "a.mp4")
    with pytest.raises(ValueError, match="uint8"):
        io.write_image(np.zeros((16, 16, 3), np.float32), tmp_path / "a.png")
    with pytest.raises(ValueError, match="expected one of"):
        io.write_video(gradient_video(), tmp_path / "a.avi")
    with pytest.raises(ValueError, match=r"\[-1, 1\]"):
        io.to_uint8(np.full((2, 2, 3), 3.0))
    assert io.to_uint8(np.array([-1.0, 0.0, 1.0])).tolist() == [0, 128, 255]
    with pytest.raises(ValueError, match="mode must be 'round' or 'truncate'"):
        io.to_uint8(np.zeros(2), mode="nearest")


def test_truncate_saves_frames_as_the_reference_scripts_do():
    """clamp((x + 1) / 2, 0, 1) * 255, truncated: 0.999 of a level is dropped, as numpy's astype(uint8) does; the
    pipelines' frames, from torch tensors (bfloat16 too) as from arrays."""
    levels = [-1.5, -1.0, 0.0, 2 * 200.9 / 255 - 1, 1.0, 3.0]
    assert io.to_uint8(np.array(levels), mode="truncate").tolist() == [0, 0, 127, 200, 255, 255]
    assert io.to_uint8(torch.tensor(levels), mode="truncate").tolist() == [0, 0, 127, 200, 255, 255]
    assert io.to_uint8(torch.tensor([-1.0, 0.0, 1.0], dtype=torch.bfloat16), mode="truncate").tolist() == [0, 127, 255]


def test_one_uint8_check_says_what_was_expected_and_how_to_fix_it():
    with pytest.raises(ValueError, match=r"An RGB image must be uint8 \[H, W, 3\], got float32 \[4, 4, 3\]; read it"):
        io.check_uint8(np.zeros((4, 4, 3), np.float32), 3, "An RGB image", channels=(3,), fix="read it")
    with pytest.raises(ValueError, match=r"must be uint8 frames \[T, H, W, C\] with C in 3, 4, got uint8 \[4, 4, 3\]"):
        io.check_uint8(np.zeros((4, 4, 3), np.uint8), 4, "A video", channels=(3, 4))
    video = np.zeros((2, 4, 4, 1), np.uint8)
    assert io.check_uint8(video, 4, "A video") is video


def transparent_gif(path, frames=3, size=12):
    """A GIF whose frames are a green 4 x 4 square moving right on a transparent background (black beneath)."""
    pictures = []
    for index in range(frames):
        rgba = np.zeros((size, size, 4), np.uint8)  # transparent black
        rgba[4:8, 2 + 2 * index:6 + 2 * index] = (20, 200, 40, 255)
        pictures.append(Image.fromarray(rgba))
    pictures[0].save(path, save_all=True, append_images=pictures[1:], duration=100, loop=0, disposal=2)
    return path


def test_transparent_gif_frames_are_composited_on_white(tmp_path):
    path = transparent_gif(tmp_path / "moving.gif")
    frames = io.read_video(path)
    assert frames.shape == (3, 12, 12, 3)
    for index, frame in enumerate(frames):
        square = np.zeros((12, 12), bool)
        square[4:8, 2 + 2 * index:6 + 2 * index] = True
        assert (frame[square] == (20, 200, 40)).all()
        assert (frame[~square] == 255).all()  # white, not the black beneath the transparency
    rgba = io.read_video(path, keep_alpha=True)
    assert rgba.shape == (3, 12, 12, 4)
    np.testing.assert_array_equal(rgba[..., 3] == 255, frames.min(axis=-1) < 255)
    assert set(np.unique(rgba[..., 3])) == {0, 255}


def test_opaque_gifs_keep_an_opaque_alpha_as_the_reference_reads_them(tmp_path):
    path = io.write_video(gradient_video(), tmp_path / "opaque.gif")
    rgba = io.read_video(path, keep_alpha=True)
    assert rgba.shape == (4, 16, 24, 4) and (rgba[..., 3] == 255).all()
    assert io.read_video(path).shape == (4, 16, 24, 3)


def test_rgba_frame_folders_are_composited_with_their_alpha(tmp_path):
    rgba = np.zeros((2, 6, 6, 4), np.uint8)  # transparent black
    rgba[:, 1, 1] = (100, 100, 100, 50)  # soft: 100 * 50/255 + 255 * 205/255 = 224.6 -> 224 (truncated)
    rgba[:, 3, 3] = (10, 20, 30, 255)
    for index, frame in enumerate(rgba):
        io.write_image(frame, tmp_path / "frames" / f"{index}.png")
    io.write_image(np.full((6, 6, 3), 7, np.uint8), tmp_path / "frames" / "2.png")  # an RGB frame among them
    frames = io.read_video(tmp_path / "frames")
    assert frames.shape == (3, 6, 6, 3)
    assert (frames[:2, 1, 1] == 224).all() and (frames[:2, 3, 3] == (10, 20, 30)).all()
    assert (frames[:2, 0, 0] == 255).all() and (frames[2] == 7).all()
    kept = io.read_video(tmp_path / "frames", keep_alpha=True)
    np.testing.assert_array_equal(kept[:2], rgba)
    assert (kept[2] == (7, 7, 7, 255)).all()
    assert io.read_image(tmp_path / "frames" / "0.png")[1, 1].tolist() == [224, 224, 224]


def broken_files(folder):
    """A text file named like an image, a truncated PNG and a text file named like a video."""
    folder.mkdir(exist_ok=True)
    (folder / "notes.png").write_text("not a picture")
    io.write_image(gradient_video()[0], folder / "whole.png")
    whole = (folder / "whole.png").read_bytes()
    (folder / "cut.png").write_bytes(whole[:len(whole) // 2])
    (folder / "notes.mp4").write_text("not a video")
    return folder


@pytest.mark.parametrize("name", ["notes.png", "cut.png"])
def test_unreadable_images_give_one_clear_error(tmp_path, name):
    path = broken_files(tmp_path) / name
    for read in (io.read_image, io.read_video):
        expected = rf"Could not read {name} as an image \(.+\): expected a PNG, JPEG"
        with pytest.raises(ValueError, match=expected) as error:
            read(path)
        assert error.value.__suppress_context__  # one error, not the decoder's traceback as well


def test_unreadable_videos_and_frames_give_one_clear_error(tmp_path):
    folder = broken_files(tmp_path)
    with pytest.raises(ValueError, match=r"Could not read notes.mp4 as a video \(.+\): expected an MP4, GIF"):
        io.read_video(folder / "notes.mp4")
    with pytest.raises(ValueError, match="Could not read cut.png as an image"):
        io.read_video(str(folder / "[cw]*.png"))  # a folder of frames with a truncated one
    with pytest.raises(FileNotFoundError, match="No image file"):
        io.read_image(folder / "missing.png")


def test_gif_bytes_is_an_animated_gif_of_the_frames_enlarged():
    import io as bytes_io

    frames = np.random.default_rng(0).integers(0, 256, (3, 4, 5, 3), dtype=np.uint8)
    data = io.gif_bytes(frames, fps=5, scale=2)
    assert data[:6] == b"GIF89a"
    with Image.open(bytes_io.BytesIO(data)) as gif:
        assert gif.n_frames == 3 and gif.size == (10, 8)
