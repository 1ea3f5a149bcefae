"""minigen.profiling: FLOPs by kind of layer add up and go where they belong, and memory points measured in fresh
processes show what the levers do."""

import sys

import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from minigen import profiling
from minigen.presets.networks import tiny_svd


class Outer(nn.Module):
    """A linear layer, a "temporal" child and a "ResBlock" child, and one product of its own."""

    def __init__(self):
        super().__init__()
        self.first = nn.Linear(4, 8)
        self.time_stack = nn.Sequential(nn.Linear(8, 8))
        self.blocks = nn.ModuleList([ResBlock()])  # a container that is never called itself

    def forward(self, x):
        x = self.blocks[0](self.time_stack(self.first(x)))
        return x @ torch.ones(8, 2)  # this module's own FLOPs


class ResBlock(nn.Module):
    def __init__(self):
        super().__init__()
        self.inner = nn.Linear(8, 8)

    def forward(self, x):
        return self.inner(x)


def test_every_flop_is_counted_once_in_its_kind():
    module, x = Outer(), torch.randn(3, 4)
    grouped = profiling.flops_by_kind(module, lambda: module(x))
    assert grouped == {"other (embeddings, in/out, resampling)": 2 * 3 * 4 * 8 + 2 * 3 * 8 * 2,
                       "temporal layers": 2 * 3 * 8 * 8, "spatial ResBlocks": 2 * 3 * 8 * 8}


def test_tiny_svd_on_meta_adds_up():
    config = tiny_svd()
    with torch.device("meta"):
        network = config.build()
        inputs = dict(x=torch.randn(16, 8, 8, 8), timesteps=torch.rand(16), context=torch.randn(16, 1, 32),
                      y=torch.randn(16, 24), num_video_frames=8, image_only_indicator=torch.zeros(2, 8))
    with torch.no_grad():
        grouped = profiling.flops_by_kind(network, lambda: network(**inputs))
        with FlopCounterMode(display=False) as counter:
            network(**inputs)
    assert sum(grouped.values()) == counter.get_total_flops()
    assert set(grouped) == {"spatial ResBlocks", "spatial attention blocks", "temporal layers",
                            "other (embeddings, in/out, resampling)"}
    assert all(value > 0 for value in grouped.values())


def test_a_memory_point_in_this_process():
    row = profiling.memory_point({"work": "decode", "frames": 2, "decoding_t": 1})
    assert row["work"] == "decode" and row["latent_size"] == 8  # the work's defaults are filled in
    assert row["peak_mib"] >= 0 and row["seconds"] > 0
    assert row["exact"] == sys.platform.startswith("linux")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="exact peaks need Linux's /proc")
def test_levers_measured_in_fresh_processes():
    rows = profiling.measure_memory([
        {"work": "train", "videos": 2}, {"work": "train", "videos": 2, "checkpointing": True},
        {"work": "decode", "frames": 8, "decoding_t": 1}, {"work": "decode", "frames": 8, "decoding_t": 8},
    ])
    plain, checkpointed, one, all_frames = (row["peak_mib"] for row in rows)
    # the peaks include what the process holds besides (its size varies from machine to machine), so the test asks
    # for the saving in MiB: checkpointing keeps fewer activations, one frame per decoder call fewer feature maps
    assert plain - checkpointed > 10  # 98 against 60 MiB on a quiet machine, 147 against 122 in a CI run
    assert all_frames - one > 10  # about 61 against 28 MiB
    assert all(row["exact"] for row in rows)
