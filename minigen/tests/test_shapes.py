"""The shapes dataset: shapes, range, determinism, distinct classes, bad inputs."""

import pytest
import torch

from minigen.data.shapes import SHAPES, ShapesDataset, render_shapes, sample_shapes


def test_shapes_labels_and_range():
    images, labels = sample_shapes(64, torch.Generator().manual_seed(0))
    assert images.shape == (64, 3, 32, 32) and images.dtype == torch.float32
    assert labels.shape == (64,) and labels.dtype == torch.int64
    assert set(labels.tolist()) <= set(range(len(SHAPES)))
    assert images.min() >= -1 and images.max() <= 1
    assert (images == -1).any() and (images > 0).any()  # black background, bright shapes


def test_same_seed_same_images():
    first = sample_shapes(16, torch.Generator().manual_seed(3))
    second = sample_shapes(16, torch.Generator().manual_seed(3))
    other = sample_shapes(16, torch.Generator().manual_seed(4))
    torch.testing.assert_close(first, second, atol=0, rtol=0)
    assert not torch.equal(first[0], other[0])
    torch.testing.assert_close(ShapesDataset(8, seed=1)[5], ShapesDataset(8, seed=1)[5], atol=0, rtol=0)


def test_each_class_draws_a_different_shape():
    """The same position, size and colour give a different mask for every class."""
    n = len(SHAPES)
    images = render_shapes(torch.arange(n), torch.zeros(n, 2), torch.full((n,), 0.6), torch.ones(n, 3))
    masks = images[:, 0] > 0  # n h w
    for i in range(n):
        for j in range(i + 1, n):
            differing = (masks[i] ^ masks[j]).float().mean()
            assert differing > 0.02, f"{SHAPES[i]} and {SHAPES[j]} look alike"
    areas = masks.float().mean(dim=(1, 2))
    assert (areas > 0.1).all() and (areas < 0.5).all()


def test_shapes_stay_inside_the_image():
    images, _ = sample_shapes(256, torch.Generator().manual_seed(0))
    border = torch.cat([images[..., 0, :], images[..., -1, :], images[..., :, 0], images[..., :, -1]], dim=-1)
    assert (border < -0.5).float().mean() > 0.97  # only anti-aliased corners may touch the edge


def test_chosen_labels_and_bad_inputs():
    labels = torch.tensor([3, 0, 2])
    _, returned = sample_shapes(3, labels=labels)
    assert torch.equal(returned, labels)
    with pytest.raises(ValueError, match="labels must have shape"):
        sample_shapes(4, labels=labels)
    with pytest.raises(ValueError, match="Shape labels must be in"):
        render_shapes(torch.tensor([len(SHAPES)]), torch.zeros(1, 2), torch.ones(1), torch.ones(1, 3))
    with pytest.raises(ValueError, match="size_range"):
        sample_shapes(4, size_range=(0.5, 1.5))
