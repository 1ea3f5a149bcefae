"""The `minigen` command: sample with any official model, or identify a checkpoint file.

    minigen sample svd --input photo.png --checkpoint svd.safetensors --output clip.mp4
    minigen sample sdxl --prompt "a lighthouse at dusk" --checkpoint sd_xl_base_1.0.safetensors --output out.png
    minigen inspect some_file.safetensors

`--preset NAME` instead of `--checkpoint` builds a preset: the trained course models (tiny_svd, tiny_sv3d,
tiny_sv4d2) load their weights from data/, any other preset gets random weights (tiny_* presets run on any CPU):

    minigen sample sv3d-p --preset tiny_sv3d --input data/object.png --output orbit.gif

`--preset NAME` beside `--checkpoint` says which model the file holds, for files whose tensors cannot tell
(SD 2.1 512 and 768 have the same ones):

    minigen sample sd21 --checkpoint v2-1_768-ema-pruned.safetensors --preset sd_2_1_768 --prompt owl --output owl.png

`--random-weights` asks for random weights even where trained ones exist. `python -m minigen ...` is the same.

A folder as --input makes one output per input file in the --output folder, and torchrun shares them out:

    torchrun --nproc_per_node=4 -m minigen sample svd --input photos/ --output clips/ --checkpoint svd.safetensors
"""

import argparse
import os
import shlex
import sys
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import torch

from . import io
from . import train as trainer
from .checkpoint import CheckpointError, inspect_checkpoint
from .pipelines import SV3DPipeline, SV4D2Pipeline, SV4DPipeline, SVDPipeline, TextToImagePipeline, TurboPipeline
from .pipelines.common import SAMPLERS, identify_preset

# the options of each family of pipelines (flags of OPTIONS below)
GUIDED = ("cfg", "sampler")  # every model but turbo
VIDEO = ("min-cfg", "encoding-t", "decoding-t")  # per-frame guidance and the chunked VAE
TEXT = ("prompt", "negative-prompt", "height", "width", "num-images") + GUIDED
TURBO = ("prompt", "height", "width", "num-images")
SVD = ("num-frames", "fps-id", "motion-bucket-id", "cond-aug") + GUIDED + VIDEO
SV3D = ("num-frames", "cond-aug", "elevations-deg", "azimuths-deg", "preprocess", "image-frame-ratio", "background",
        "rembg-model-path") + GUIDED + VIDEO
SV4D = ("elevations-deg", "azimuths-deg", "preprocess", "image-size", "image-frame-ratio", "remove-bg",
        "rembg-model-path") + GUIDED + VIDEO
SV4D2 = ("num-frames",) + SV4D


@dataclass(frozen=True)
class Model:
    """What `minigen sample MODEL` runs: one row of MODELS, from which the subcommand's options and its call of the
    pipeline are made."""

    pipeline: type  # the pipeline class
    preset: str  # the official preset it loads by default
    kind: str  # "text" (prompt -> images), "image" (image -> video) or "video" (video -> multi-view videos)
    flags: tuple  # its options besides --steps and --seed


MODELS = {
    "sdxl": Model(TextToImagePipeline, "sd_xl_base", "text", TEXT),
    "sdxl-turbo": Model(TurboPipeline, "sd_xl_turbo", "text", TURBO),
    "sd21": Model(TextToImagePipeline, "sd_2_1_768", "text", TEXT),
    "svd": Model(SVDPipeline, "svd", "image", SVD),
    "svd-xt": Model(SVDPipeline, "svd_xt", "image", SVD),
    "sv3d-u": Model(SV3DPipeline, "sv3d_u", "image", tuple(f for f in SV3D if not f.endswith("-deg"))),
    "sv3d-p": Model(SV3DPipeline, "sv3d_p", "image", SV3D),
    "sv4d": Model(SV4DPipeline, "sv4d", "video", SV4D),
    "sv4d2": Model(SV4D2Pipeline, "sv4d2", "video", SV4D2),
}
DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
# what each kind of model writes, and the --output suffixes that can hold it
OUTPUTS = {
    "text": ("images, numbered when more than one (a video suffix makes them one video's frames)",
             io.IMAGE_SUFFIXES + io.VIDEO_SUFFIXES),
    "image": ("a video (an image suffix writes its frames as numbered images)", io.VIDEO_SUFFIXES + io.IMAGE_SUFFIXES),
    "video": ("one video with the views side by side", io.VIDEO_SUFFIXES),
}

# flag -> (pipeline keyword, type, help)
OPTIONS = {
    "prompt": ("prompt", str, "what to draw"),
    "negative-prompt": ("negative_prompt", str, "what to steer away from (with --cfg > 1)"),
    "height": ("height", int, "image height in pixels, a multiple of 64 (default: the model's)"),
    "width": ("width", int, "image width in pixels, a multiple of 64 (default: the model's)"),
    "cfg": ("cfg", float, "guidance scale, 1 switches guidance off (video models: the largest per-frame scale, the "
                          "scripts' cfg; default: the model's)"),
    "sampler": ("sampler", str, "the sampler (default: the model's, EulerEDMSampler for the scripts' models)"),
    "num-images": ("num_images", int, "images per prompt"),
    "num-frames": ("num_frames", int, "frames to generate (default: the model's: 14 svd, 25 svd-xt, 21 sv3d); "
                                      "sv4d2: frames used from the start of the video (default: up to 21)"),
    "fps-id": ("fps_id", int, "SVD's frame-rate condition (default 6)"),
    "motion-bucket-id": ("motion_bucket_id", int, "SVD's amount-of-motion condition, 0-255 (default 127)"),
    "cond-aug": ("cond_aug", float, "noise added to the conditioning image (default 0.02 svd, 1e-5 sv3d)"),
    "elevations-deg": ("elevations_deg", float, "camera elevation(s) in degrees; one value or one per view"),
    "azimuths-deg": ("azimuths_deg", float, "camera azimuths in degrees, one per view, in orbit order"),
    "preprocess": ("preprocess", bool, "cut out (SV3D) and frame the object first, as the scripts do (default: on "
                                       "for the official models, off for the tiny course models)"),
    "image-size": ("image_size", int, "with preprocessing: the frames' side in pixels (default: the trained 576)"),
    "image-frame-ratio": ("image_frame_ratio", float, "with preprocessing: fraction of the frame the object fills"),
    "background": ("background", str, "SV3D cut-out: auto (the script's: the file's alpha, else rembg), or "
                                      "uniform (a plain background, no model)"),
    "remove-bg": ("remove_bg", bool, "with preprocessing: cut every frame out with rembg first (the script's "
                                     "remove_bg)"),
    "rembg-model-path": ("rembg_model_path", Path, "rembg's segmentation model file (no download; or set "
                                                   "$MINIGEN_REMBG_MODEL)"),
    "decoding-t": ("decoding_t", int, "frames per VAE decoder call: lower saves memory"),
    "encoding-t": ("encoding_t", int, "frames per VAE encoder call: lower saves memory"),
    "min-cfg": ("min_cfg", float, "smallest per-frame guidance scale (default: the model's)"),
    "steps": ("num_steps", int, "sampler steps (default: the model's)"),
    "seed": ("seed", int, "random seed: the same seed gives the same output (default: the script's)"),
}
COMMON_OPTIONS = ("steps", "seed")
CHOICES = {"sampler": SAMPLERS, "background": ("auto", "alpha", "rembg", "uniform")}  # flags with a closed list


def add_sample_parser(commands) -> None:
    """`minigen sample MODEL ...`: one subcommand per row of MODELS, each with only the options its pipeline takes."""
    sample = commands.add_parser("sample", help="generate with one of the official models",
                                 description="Generate images or videos; options not given take the model's "
                                             "official defaults (those of the reference sampling scripts).")
    models = sample.add_subparsers(dest="model", required=True, metavar="MODEL")
    for name, model in MODELS.items():
        parser = models.add_parser(name, help=f"{model.kind} input, {model.pipeline.__name__} with {model.preset}")
        add_weights_arguments(parser, name)
        add_input_output_arguments(parser, model)
        add_running_arguments(parser)
        add_model_options(parser, model)


def add_weights_arguments(parser, name: str) -> None:
    """Where the weights come from: an official file, a preset, or both (the preset then names the file's model)."""
    parser.add_argument("--checkpoint", type=Path, help="the official .safetensors file (its model is identified "
                        "from its tensors; --preset names it where they cannot tell, as for SD 2.1 512 / 768)")
    parser.add_argument("--preset", help="alone: build this preset (the trained course models tiny_svd, tiny_sv3d, "
                        "tiny_sv4d2 load data/'s weights, others get random weights); with --checkpoint: the "
                        "model the file holds")
    parser.add_argument("--random-weights", action="store_true",
                        help="with --preset alone: random weights (from a fixed seed) even where trained ones exist")
    if name == "sv4d":
        parser.add_argument("--sv3d-checkpoint", type=Path, help="the SV3D file that makes SV4D's reference views")


def add_input_output_arguments(parser, model: Model) -> None:
    """--input (image and video models), --output, and --format for folder mode: each help says what the kind of
    model reads and writes."""
    if model.kind == "image":
        parser.add_argument("--input", required=True,
                            help="the input image, or a folder of images: one output each, in the --output folder")
    elif model.kind == "video":
        parser.add_argument("--input", required=True,
                            help="the input video (file, folder of frames or pattern), or a folder of video "
                                 "files: one output each, in the --output folder")
    writes, suffixes = OUTPUTS[model.kind]
    parser.add_argument("--output", type=Path, required=True,
                        help=f"the file to write, ending in {', '.join(suffixes)}: {writes}"
                             + ("" if model.kind == "text" else "; a folder when --input is a folder of inputs"))
    if model.kind != "text":
        parser.add_argument("--format", help=f"suffix of the outputs in folder mode: one of "
                                             f"{', '.join(io.VIDEO_SUFFIXES)} (default .mp4)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace --output if it exists (in folder mode: outputs that exist are skipped "
                             "without it)")
    parser.add_argument("--fps", type=float, default=7, help="frame rate of a written video")


def add_running_arguments(parser) -> None:
    """How to run, whatever the model: device, precision, offloading, progress bars."""
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu",
                        help="where to run (default: cuda when available, else cpu)")
    parser.add_argument("--dtype", choices=sorted(DTYPES), default="float32",
                        help="precision of the network and encoders; the VAE stays float32")
    parser.add_argument("--offload", action="store_true", help="keep only the module in use on the device")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def add_model_options(parser, model: Model) -> None:
    """The model's own options from OPTIONS, each reaching one keyword of its pipeline's call; an option left out
    keeps the model's official default."""
    for flag in model.flags + COMMON_OPTIONS:
        keyword, kind, text = OPTIONS[flag]
        if kind is bool:  # --flag / --no-flag; neither keeps the model's default
            parser.add_argument(f"--{flag}", dest=keyword, action=argparse.BooleanOptionalAction, help=text)
        elif flag in ("elevations-deg", "azimuths-deg"):
            parser.add_argument(f"--{flag}", dest=keyword, type=kind, nargs="+", help=text)
        else:
            parser.add_argument(f"--{flag}", dest=keyword, type=kind, choices=CHOICES.get(flag), help=text)


def build_parser() -> argparse.ArgumentParser:
    """The whole command line: `sample`, `inspect` and `train` (the last shared with `python -m minigen.train`)."""
    parser = argparse.ArgumentParser(prog="minigen", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    add_sample_parser(commands)
    inspect = commands.add_parser("inspect", help="tell which official model a checkpoint file holds")
    inspect.add_argument("checkpoint", type=Path)
    train = commands.add_parser("train", help="train a recipe (the same as python -m minigen.train)",
                                description=trainer.__doc__.split("\n\n")[0])
    trainer.add_arguments(train)
    return parser


def load_pipeline(args, model: Model):
    """The pipeline the arguments ask for: from --checkpoint (with --preset naming its model if given) or built from
    --preset, on --device in --dtype; refuses option combinations that cannot mean anything."""
    pipeline_class = model.pipeline
    options = {"device": args.device, "dtype": DTYPES[args.dtype], "offload": "model" if args.offload else None}
    if args.model == "sv4d":  # SV4D's reference views come from an SV3D model
        if args.checkpoint and not args.sv3d_checkpoint:
            raise ValueError("sv4d needs --sv3d-checkpoint (an SV3D_u or SV3D_p file) for its reference views.")
        options["sv3d"] = args.sv3d_checkpoint or "tiny_sv3d"
    if args.checkpoint and args.random_weights:
        raise ValueError("--random-weights goes with --preset alone; a --checkpoint brings its own weights.")
    if args.checkpoint and args.preset:
        check_preset_fits(pipeline_class, args.checkpoint, args.preset)
    if args.checkpoint:
        preset = args.preset or (model.preset if args.model == "sv4d" else None)
        return pipeline_class.from_checkpoint(args.checkpoint, preset=preset, **options)
    # random weights come from a fixed seed: `--seed 7` twice (or on every torchrun rank) gives the same output
    return pipeline_class.from_preset(args.preset, weights="random" if args.random_weights else "default", **options)


def check_preset_fits(pipeline_class, path: Path, preset: str) -> None:
    """`--preset` beside `--checkpoint` names the model the file holds; refuse, before loading, a preset the
    pipeline does not run or whose tensors the file does not hold."""
    if preset not in pipeline_class.DEFAULTS:
        raise ValueError(f"{pipeline_class.__name__} runs {', '.join(pipeline_class.DEFAULTS)}; got --preset {preset}.")
    try:
        identify_preset(path, [preset])
    except CheckpointError:  # the file itself is unreadable: its own message says so
        raise
    except ValueError:
        matches = inspect_checkpoint(path).matches
        holds = f"it holds {', '.join(matches)}" if matches else "`minigen inspect` tells what it holds"
        raise ValueError(f"{path} does not hold --preset {preset}'s tensors ({holds}); give the preset of the file's "
                         "model, or leave --preset out to have it identified.") from None


def check_output_suffix(args, model: Model) -> None:
    """Refuse, before sampling, an --output whose suffix cannot hold what the model writes."""
    writes, suffixes = OUTPUTS[model.kind]
    if args.output.suffix.lower() not in suffixes:
        raise ValueError(f"{args.model} writes {writes}: --output must end in one of {', '.join(suffixes)}, "
                         f"got {args.output.name}.")


def write_output(result, path: Path, fps: float, overwrite: bool) -> list[Path]:
    """Images [N, H, W, 3] -> PNGs (numbered when N > 1); a video [T, H, W, 3]; views [V, T, H, W, 3] side by side."""
    if result.ndim == 5:
        return [io.write_grid(result, path, fps=fps, overwrite=overwrite)]
    if path.suffix.lower() in io.VIDEO_SUFFIXES:
        return [io.write_video(result, path, fps=fps, overwrite=overwrite)]
    if len(result) == 1:
        return [io.write_image(result[0], path, overwrite=overwrite)]
    return [io.write_image(image, path.with_name(f"{path.stem}_{index}{path.suffix}"), overwrite=overwrite)
            for index, image in enumerate(result)]


def pipeline_call(args, model: Model, source) -> dict:
    """The pipeline's keyword arguments: the options given (the others keep the model's defaults) and the input."""
    keywords = [OPTIONS[flag][0] for flag in model.flags + COMMON_OPTIONS]
    call = {key: getattr(args, key) for key in keywords if getattr(args, key) is not None}
    if model.kind != "text":  # the pipelines read the file: an object's alpha, if any, is its cut-out
        call[model.kind] = Path(source)
    if len(call.get("elevations_deg", ())) == 1:  # one elevation may stand for all views
        call["elevations_deg"] = call["elevations_deg"][0]
    return call


def sample(args) -> int:
    """`minigen sample`: one input (or a prompt) to one output file, or a folder of inputs to a folder of outputs;
    every check that can fail runs before the model is loaded. Returns the exit status."""
    model = MODELS[args.model]
    inputs = folder_inputs(model, args.input) if model.kind != "text" else None
    if inputs is not None:
        return sample_folder(args, model, inputs)
    if getattr(args, "format", None):
        raise ValueError("--format is for a folder of inputs; with one input, --output's suffix chooses the format.")
    if distributed_env()[1] > 1:
        raise ValueError("Under torchrun, --input must be a folder whose files the ranks share; one input needs "
                         "one process: run minigen without torchrun.")
    check_output_suffix(args, model)  # before minutes of sampling, not after
    if args.output.exists() and not args.overwrite:
        raise FileExistsError(f"{args.output} exists; pass --overwrite to replace it.")
    call = pipeline_call(args, model, getattr(args, "input", None))
    pipeline = load_pipeline(args, model)
    result = pipeline(**call, progress=not args.quiet)
    for path in write_output(result, args.output, args.fps, args.overwrite):
        print(f"wrote {path}")
    return 0


# ---------------------------------------------------------------- folder mode: one output per input, torchrun shards


def distributed_env() -> tuple[int, int, int]:
    """(RANK, WORLD_SIZE, LOCAL_RANK) as torchrun sets them in the environment; (0, 1, 0) in a plain process."""
    return tuple(int(os.environ.get(name, default)) for name, default in
                 (("RANK", 0), ("WORLD_SIZE", 1), ("LOCAL_RANK", 0)))


def total_over_ranks(count: int, world_size: int) -> int:
    """The sum of `count` over the torchrun ranks, once every rank has called this (a barrier).

    Sharding itself needs no process group: each rank takes every WORLD_SIZE-th input. But torchrun stops all ranks
    as soon as one exits with an error, so a rank whose inputs failed must wait here for the others to finish theirs.
    The ranks exchange this one number only, so gloo (on the CPU) serves GPU runs too; the long timeout lets a rank
    with little to do wait for hours.
    """
    if world_size == 1:
        return count
    import torch.distributed as dist

    dist.init_process_group("gloo", timeout=timedelta(days=7))
    total = torch.tensor([count])
    dist.all_reduce(total)
    dist.destroy_process_group()
    return int(total)


def folder_inputs(model: Model, source) -> list[Path] | None:
    """The input files of folder mode sorted by name, or None when `source` is one input.

    For image models a folder of images is a batch. For video models a folder of video files is a batch, while a
    folder of images stays what it always was: the frames of one video.
    """
    source = Path(source)
    if not source.is_dir():
        return None
    suffixes = io.IMAGE_SUFFIXES if model.kind == "image" else io.VIDEO_SUFFIXES
    files = sorted(path for path in source.iterdir() if path.is_file() and path.suffix.lower() in suffixes)
    if not files and model.kind == "video":
        return None  # frames of one video
    if not files:
        raise FileNotFoundError(f"No input files ({', '.join(suffixes)}) in {source}.")
    return files


def output_paths(args, files: list[Path]) -> list[Path]:
    """`--output/<input stem><--format>` for every input; every model with folder mode writes videos."""
    suffix = args.format or ".mp4"
    suffix = suffix if suffix.startswith(".") else f".{suffix}"
    if suffix.lower() not in io.VIDEO_SUFFIXES:
        raise ValueError(f"{args.model} writes videos: --format must be one of {', '.join(io.VIDEO_SUFFIXES)}, "
                         f"got {args.format!r}.")
    if args.output.is_file() or args.output.suffix.lower() in io.IMAGE_SUFFIXES + io.VIDEO_SUFFIXES:
        raise ValueError(f"--input {args.input} is a folder, so --output must name a folder too, got {args.output}.")
    paths = [args.output / f"{file.stem}{suffix}" for file in files]
    if len(set(paths)) < len(paths):
        twins = [file.name for file, path in zip(files, paths, strict=True) if paths.count(path) > 1]
        raise ValueError(f"{', '.join(twins)} would write the same output; rename all but one.")
    return paths


def sample_folder(args, model: Model, files: list[Path]) -> int:
    """Write one output per input file; under torchrun, rank r takes files[r::WORLD_SIZE] (nothing is written twice).

    Every input is sampled with the same --seed (the model's default seed without one), so an input's output is the
    same whichever rank makes it and however many ranks there are. Outputs that exist are skipped unless
    --overwrite; an input that fails is reported with its name and the rank goes on with its others. Returns 1 if
    any input failed on any rank.
    """
    rank, world_size, local_rank = distributed_env()
    prefix = f"rank {rank}: " if world_size > 1 else ""
    paths = output_paths(args, files)
    args.output.mkdir(parents=True, exist_ok=True)
    todo = []
    for file, path in list(zip(files, paths, strict=True))[rank::world_size]:
        if path.exists() and not args.overwrite:
            print(f"{prefix}skipped {path}: it exists (--overwrite replaces it)", flush=True)
        else:
            todo.append((file, path))
    if args.device == "cuda" and "LOCAL_RANK" in os.environ:  # one GPU per rank
        args.device = f"cuda:{local_rank}"
    pipeline = load_pipeline(args, model) if todo else None
    failed = 0
    for file, path in todo:
        try:
            result = pipeline(**pipeline_call(args, model, file), progress=not args.quiet)
            for written in write_output(result, path, args.fps, args.overwrite):
                print(f"{prefix}wrote {written}", flush=True)
        except Exception as error:  # noqa: BLE001 - one bad input must not stop the others: report it, go on
            failed += 1
            print(f"{prefix}{file.name}: {error}", file=sys.stderr, flush=True)
    if failed:
        print(f"{prefix}{failed} of {len(todo)} inputs failed", file=sys.stderr, flush=True)
    return 1 if total_over_ranks(failed, world_size) else 0


def main(argv=None) -> int:
    """Run one command; a user error (bad file or option) ends in a `minigen: error:` message, not a traceback:
    one line, except a checkpoint's key report. Exit status 2."""
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "sample" and not (args.checkpoint or args.preset):
        parser.error(f"sample {args.model} needs --checkpoint FILE, --preset NAME, or both.")
    try:
        if args.command == "inspect":
            print(inspect_checkpoint(args.checkpoint))
            return 0
        if args.command == "train":
            return trainer.run_command(args, command=shlex.join(["minigen", *argv]))
        return sample(args)
    except (ValueError, OSError) as error:  # CheckpointError is a ValueError; FileNotFoundError an OSError
        print(f"minigen: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
