"""The trainer (minigen.train): learning, exact resume, processes, accumulation, freezing, dropout, errors, files.

Most tests train `micro_recipe`, a one-convolution model of four flat colours that trains in milliseconds;
one trains the real tiny_image recipe for two steps. Run as a script (by torchrun), this file is the worker
of the two-process test.
"""

import argparse
import dataclasses
import functools
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from minigen import cli
from minigen import train as trainer_module
from minigen.conditioning import EmbedderEntry, GeneralConditioner
from minigen.diffusion import Denoiser, EDMScaling
from minigen.pipelines.engine import DiffusionEngine
from minigen.recipes import TrainConfig, tiny_image
from minigen.tests.processes import run_two_processes
from minigen.train import add_arguments, config_from, learning_rate, main, matches, set_condition_dropout, train

torch.set_num_threads(1)

COLOURS = torch.tensor([[1.0, -1.0, -1.0], [-1.0, 1.0, -1.0], [-1.0, -1.0, 1.0], [1.0, 1.0, -1.0]])  # one per label


class MicroNetwork(nn.Module):
    """x `b 3 4 4`, timesteps `b`, y `b 4` (one-hot label) -> `b 3 4 4`: a convolution plus a colour per label,
    each scaled by a function of the noise level (enough to denoise flat colours almost perfectly)."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 3, padding=1)
        self.label = nn.Linear(4, 3)
        self.noise = nn.Sequential(nn.Linear(1, 16), nn.SiLU(), nn.Linear(16, 6))

    def forward(self, x, timesteps=None, context=None, y=None):
        scales = self.noise(timesteps[:, None])[..., None, None]  # b 6 1 1
        return self.conv(x) * (1 + scales[:, :3]) + self.label(y)[..., None, None] * (1 + scales[:, 3:])


def micro_engine() -> DiffusionEngine:
    conditioner = GeneralConditioner([EmbedderEntry(tiny_image.OneHotLabel(4), input_key="label")])
    return DiffusionEngine(MicroNetwork(), Denoiser(EDMScaling(0.5)), conditioner)


def micro_dataset() -> torch.utils.data.Dataset:
    labels = torch.arange(64) % 4
    return torch.utils.data.TensorDataset(COLOURS[labels][..., None, None].expand(-1, 3, 4, 4).clone(), labels)


def micro_recipe(**changes):
    """tiny_image's recipe with the micro model and data; `changes` edit its TrainConfig."""
    config = TrainConfig(steps=4, batch_size=4, learning_rate=1e-2, ema_decay=0.9, log_every=0,
                         condition_dropout={"label": 0.1})
    return dataclasses.replace(tiny_image.recipe(), name="micro", build_engine=micro_engine, dataset=micro_dataset,
                               config=dataclasses.replace(config, **changes),
                               sample=functools.partial(tiny_image.sample, image_size=4, rows=1, num_steps=2))


def weights(trainer) -> dict[str, torch.Tensor]:
    return {name: parameter.detach().clone() for name, parameter in trainer.parameters.items()}


def assert_same_state(first, second):
    """Bit-identical weights, EMA and optimizer state."""
    for name in first.parameters:
        assert torch.equal(first.parameters[name], second.parameters[name]), name
        assert torch.equal(first.ema.weights[name], second.ema.weights[name]), name
    states = first.optimizer.state_dict()["state"], second.optimizer.state_dict()["state"]
    assert states[0].keys() == states[1].keys()
    for number, state in states[0].items():
        for key, value in state.items():
            assert torch.equal(value, states[1][number][key]), (number, key)


def test_loss_decreases_on_a_learnable_recipe(tmp_path):
    trainer = train(micro_recipe(steps=30, batch_size=16, learning_rate=3e-2), tmp_path / "run", progress=False)
    first, last = sum(trainer.losses[:5]) / 5, sum(trainer.losses[-5:]) / 5
    assert last < 0.6 * first, trainer.losses  # about 2.0 -> 0.9


def test_resume_is_exact(tmp_path):
    straight = train(micro_recipe(steps=4), tmp_path / "straight", progress=False)
    train(micro_recipe(steps=2), tmp_path / "halves", progress=False)
    resumed = train(micro_recipe(steps=4), tmp_path / "halves", resume=True, progress=False)
    assert resumed.step == 4 and resumed.losses == straight.losses
    assert_same_state(straight, resumed)


def test_learning_rate_warms_up_holds_and_decays_to_zero():
    config = TrainConfig(steps=10, learning_rate=1.0, warmup_steps=2, decay_steps=4)
    rates = [learning_rate(config, step) for step in range(config.steps)]
    assert rates == pytest.approx([0.5, 1, 1, 1, 1, 1, 1, 0.75, 0.5, 0.25])


def test_the_decay_is_what_the_optimizer_uses(tmp_path):
    trainer = train(micro_recipe(steps=4, decay_steps=2), tmp_path / "run", progress=False)
    assert trainer.optimizer.param_groups[0]["lr"] == pytest.approx(0.5 * 1e-2)  # the last step: 1 / 2 of the rate


def test_a_checkpoint_older_than_a_setting_resumes_with_its_default(tmp_path):
    """A run saved before TrainConfig had a field ran with that field's default, so resuming it with the default
    continues the same run, and asking for another value is refused."""
    out = tmp_path / "run"
    train(micro_recipe(steps=2), out, progress=False)
    checkpoint = out / "checkpoint.safetensors"
    with safe_open(checkpoint, "pt") as file:
        metadata, tensors = file.metadata(), {key: file.get_tensor(key) for key in file.keys()}
    config = json.loads(metadata["config"])
    del config["decay_steps"]
    save_file(tensors, checkpoint, metadata=metadata | {"config": json.dumps(config)})
    with pytest.raises(ValueError, match="decay_steps: 0 -> 1"):
        train(micro_recipe(steps=3, decay_steps=1), out, resume=True, progress=False)
    assert train(micro_recipe(steps=3), out, resume=True, progress=False).step == 3


def test_accumulation_equals_one_micro_batch(tmp_path):
    whole = train(micro_recipe(steps=3, batch_size=4), tmp_path / "whole", progress=False)
    halves = train(micro_recipe(steps=3, batch_size=4, accumulate=2), tmp_path / "halves", progress=False)
    for name, parameter in whole.parameters.items():
        torch.testing.assert_close(halves.parameters[name], parameter, atol=1e-6, rtol=1e-5)


def ddp_worker(folder: Path) -> None:
    """One process of the two-process test: train, then save this process's weights where the test reads them.

    Each process is given its own run folder so that the test can see that process 1 wrote nothing.
    """
    rank = int(os.environ["RANK"])
    trainer = train(micro_recipe(steps=3, batch_size=4), folder / f"run_rank{rank}", progress=False)
    tensors = {f"weights.{name}": weight for name, weight in weights(trainer).items()}
    save_file(tensors | {f"ema.{name}": weight for name, weight in trainer.ema.weights.items()},
              folder / f"weights_rank{rank}.safetensors")


def test_two_processes_equal_one_process_with_the_doubled_batch(tmp_path):
    run_two_processes("minigen.tests.test_train", tmp_path)
    ranks = [load_file(tmp_path / f"weights_rank{rank}.safetensors") for rank in (0, 1)]
    assert all(torch.equal(ranks[0][key], ranks[1][key]) for key in ranks[0])
    # each process had 2 examples of the global batch of 4: one process takes all 4
    single = train(micro_recipe(steps=3, batch_size=4), tmp_path / "single", progress=False)
    for name, weight in weights(single).items():
        torch.testing.assert_close(ranks[0][f"weights.{name}"], weight, atol=1e-6, rtol=1e-5)
        torch.testing.assert_close(ranks[0][f"ema.{name}"], single.ema.weights[name], atol=1e-6, rtol=1e-5)
    assert (tmp_path / "run_rank0" / "checkpoint.safetensors").exists()
    assert not (tmp_path / "run_rank1").exists()  # only process 0 writes


def test_freezing_by_name(tmp_path):
    recipe = micro_recipe(steps=2, frozen=("model.diffusion_model.conv.",))
    torch.manual_seed(0)  # the trainer builds its engine after seeding with config.seed, 0
    before = {name: parameter.clone() for name, parameter in micro_engine().named_parameters()}
    trainer = train(recipe, tmp_path / "run", progress=False)
    after = dict(trainer.engine.named_parameters())
    assert set(trainer.parameters) == {name for name in after if ".conv." not in name}
    for name, parameter in after.items():
        assert torch.equal(parameter, before[name]) == ("conv" in name), name


def test_patterns_select_the_temporal_layers():
    temporal = "model.diffusion_model.*.time_stack."
    assert matches("model.diffusion_model.input_blocks.1.0.time_stack.in_layers.0.weight", temporal)
    assert not matches("model.diffusion_model.time_embed.0.weight", temporal)
    assert matches("model.diffusion_model.out.2.weight", "model.")


def test_condition_dropout_reaches_the_entry(tmp_path):
    engine = micro_engine()
    set_condition_dropout(engine, {"label": 0.3})
    assert engine.conditioner.entries[0].ucg_rate == 0.3
    # dropped every time, the label never reaches the network: its weight gets no gradient
    torch.manual_seed(0)
    initial = micro_engine().network.label.weight.clone()
    trainer = train(micro_recipe(steps=2, condition_dropout={"label": 1.0}), tmp_path / "run", progress=False)
    assert torch.equal(trainer.engine.network.label.weight, initial)
    with pytest.raises(ValueError, match=r"condition_dropout names \['txt'\].*it reads \['label'\]"):
        train(micro_recipe(condition_dropout={"txt": 0.1}), tmp_path / "other", progress=False)


def test_batch_keys_are_checked(tmp_path):
    def extra(examples, generator):
        return tiny_image.make_batch(examples, generator) | {"colour": torch.zeros(len(examples))}

    def missing(examples, generator):
        return {"frames": tiny_image.make_batch(examples, generator)["frames"]}

    with pytest.raises(ValueError, match=r"unread \['colour'\]. The conditioner reads \['label'\]"):
        train(dataclasses.replace(micro_recipe(), make_batch=extra), tmp_path / "extra", progress=False)
    with pytest.raises(ValueError, match=r"missing \['label'\]"):
        train(dataclasses.replace(micro_recipe(), make_batch=missing), tmp_path / "missing", progress=False)


def test_run_folders_are_never_overwritten(tmp_path):
    out = tmp_path / "run"
    train(micro_recipe(steps=1), out, progress=False)
    with pytest.raises(FileExistsError, match="pass --resume to continue it, or choose another --out"):
        train(micro_recipe(steps=1), out, progress=False)
    with pytest.raises(FileExistsError, match="holds another micro run .*learning_rate: 0.01 -> 0.02"):
        train(micro_recipe(steps=1, learning_rate=0.02), out, progress=False)
    with pytest.raises(FileExistsError, match="holds a run of recipe 'micro', not 'other'"):
        train(dataclasses.replace(micro_recipe(), name="other"), out, progress=False)
    with pytest.raises(ValueError, match="Cannot resume .* learning_rate: 0.01 -> 0.02.*Only steps"):
        train(micro_recipe(steps=2, learning_rate=0.02), out, resume=True, progress=False)
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "a.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="holds files but no checkpoint"):
        train(micro_recipe(), tmp_path / "notes", progress=False)
    with pytest.raises(FileNotFoundError, match="holds no checkpoint.safetensors"):
        train(micro_recipe(), tmp_path / "new", resume=True, progress=False)


def test_impossible_settings_are_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="'fp16' needs a CUDA device"):
        train(micro_recipe(precision="fp16"), tmp_path / "a", device="cpu", progress=False)
    with pytest.raises(ValueError, match=r"decay_steps must lie in 0 .. steps \(4\)"):
        train(micro_recipe(decay_steps=5), tmp_path / "e", progress=False)
    with pytest.raises(ValueError, match=r"batch_size 6 must be a multiple of accumulate \(4\)"):
        train(micro_recipe(batch_size=6, accumulate=4), tmp_path / "b", progress=False)
    with pytest.raises(ValueError, match="'model.unet.' .* matches no parameter"):
        train(micro_recipe(trainable=("model.unet.",)), tmp_path / "c", progress=False)
    def with_first_stage():
        engine = micro_engine()
        engine.first_stage_model = nn.Linear(1, 1)
        return engine

    everything = dataclasses.replace(micro_recipe(trainable=("",)), build_engine=with_first_stage)
    with pytest.raises(ValueError, match=r"selects parameters of \['first_stage_model'\].*trains the network"):
        train(everything, tmp_path / "d", progress=False)


def test_tiny_image_in_bf16_with_checkpointing_writes_every_file(tmp_path):
    recipe = tiny_image.recipe()
    config = dataclasses.replace(recipe.config, steps=2, batch_size=2, sample_every=0, checkpoint_every=0,
                                 precision="bf16", gradient_checkpointing=True)
    trainer = train(recipe, tmp_path, config, progress=False, command="python -m minigen.train tiny_image")
    assert trainer.engine.network.input_blocks[1][0].use_checkpoint  # a ResBlock
    names = {path.name for path in tmp_path.iterdir()}
    assert names == {"checkpoint.safetensors", "ema.safetensors", "loss.png", "samples_000002.png",
                     "sigma_buckets.json"}
    with safe_open(tmp_path / "ema.safetensors", "pt") as export:
        assert export.metadata()["command"] == "python -m minigen.train tiny_image"
        assert export.metadata()["recipe"] == "tiny_image" and export.metadata()["steps"] == "2"
        official = {name for name, _ in trainer.engine.named_parameters() if name.startswith("model.diffusion_model.")}
        assert set(export.keys()) == official
        assert export.get_tensor("model.diffusion_model.input_blocks.0.0.weight").dtype == torch.float16
    buckets = json.loads((tmp_path / "sigma_buckets.json").read_text())
    assert len(buckets["sigma_edges"]) == len(buckets["mean_loss"]) + 1 and sum(buckets["count"]) == 2 * 2


def test_command_line(capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main(["train", "--help"])
    assert exit_.value.code == 0 and "--resume" in capsys.readouterr().out
    listed = subprocess.run([sys.executable, "-m", "minigen.train", "--list"], capture_output=True, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=120)
    assert listed.returncode == 0 and "tiny_image" in listed.stdout and "2-core CPU" in listed.stdout
    assert main(["tiny_image", "--precision", "fp16", "--device", "cpu", "--out", "unused"]) == 2
    assert "needs a CUDA device" in capsys.readouterr().err


def test_the_recorded_command_says_how_many_processes_ran(monkeypatch):
    assert trainer_module.launcher() == ["python"]  # a plain run
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    assert trainer_module.launcher() == ["torchrun", "--nproc_per_node=2"]
    monkeypatch.setenv("WORLD_SIZE", "16")
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "8")
    assert trainer_module.launcher() == ["torchrun", "--nnodes=2", "--nproc_per_node=8"]


def test_options_override_the_recipe_config():
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(["x", "--condition-dropout", "label=0.2", "--trainable", "a.", "b.", "--grad-clip", "0",
                              "--no-gradient-checkpointing"])
    config = config_from(args, TrainConfig(steps=7, condition_dropout={"txt": 0.1}))
    assert config.condition_dropout == {"txt": 0.1, "label": 0.2} and config.trainable == ("a.", "b.")
    assert config.grad_clip is None and config.gradient_checkpointing is False and config.steps == 7


if __name__ == "__main__":
    ddp_worker(Path(sys.argv[1]))
