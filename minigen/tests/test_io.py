"""Image and video files: round trips, folders and patterns, no silent overwrite, clear errors."""

import numpy as np
import pytest

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
