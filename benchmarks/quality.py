"""Quality of the trained tiny models on held-out objects, beside trivial baselines (minigen.recipes.quality).

Each recipe's committed model (data/) is scored on objects it never saw in training (another seed of the same
world): novel views against the renderer's truth for tiny_sv3d and tiny_sv4d2, frame 0 and motion control for
tiny_i2v, a shape classifier's verdict for tiny_image. Results go to benchmarks/results/quality_RECIPE.json;
the `quality` section of docs/benchmarks.md is rewritten from every result present.

    python benchmarks/quality.py                    # all four (about 10 minutes on 2 idle CPU cores)
    python benchmarks/quality.py tiny_sv3d          # one
    python benchmarks/quality.py --report           # only rewrite the docs section from the saved results

`--weights FILE` scores another model file of one recipe instead (an earlier data/ file, a run's export), into
benchmarks/results/quality_RECIPE_FILESTEM.json, leaving the docs alone:

    python benchmarks/quality.py tiny_sv4d2 --weights runs/my_export.safetensors
"""

import argparse
import json
import os
import time
from pathlib import Path

import torch
from _report import write_section  # benchmarks/ is the script's folder

from minigen.recipes.quality import EVALUATIONS, trained_engine

RESULTS = Path(__file__).resolve().parent / "results"
OBJECTS = {"tiny_image": {}, "tiny_i2v": {"objects": 8}, "tiny_sv3d": {"objects": 24}, "tiny_sv4d2": {"objects": 96}}


def evaluate(recipe: str, weights: Path | None = None) -> dict:
    """Score the recipe's committed model (or the file `weights`) and write its results file."""
    start = time.time()
    result = EVALUATIONS[recipe](trained_engine(recipe, weights or "default"), **OBJECTS[recipe])
    result["seconds"] = round(time.time() - start, 1)
    name = f"quality_{recipe}" if weights is None else f"quality_{recipe}_{weights.stem}"
    (RESULTS / f"{name}.json").write_text(json.dumps(result, indent=1) + "\n")
    return result


def novel_view_rows(name: str, result: dict, objects: int) -> list[str]:
    model, copy, mean, margin = (result[key] for key in ("model", "copy input view", "mean training image", "margin"))
    return [f"| {name} | {objects} held-out objects | {model['psnr']:.2f} dB / {model['ssim']:.3f} | "
            f"{copy['psnr']:.2f} dB / {copy['ssim']:.3f} | {mean['psnr']:.2f} dB / {mean['ssim']:.3f} | "
            f"{margin['psnr']:+.2f} dB (± {margin['standard error']:.2f}) |"]


def report(results: dict) -> str:
    lines = [
        "## Trained tiny models: quality on held-out objects",
        "",
        "Written by `benchmarks/quality.py` (scores in `minigen.recipes.quality`). Every score is on objects drawn "
        "from another seed of the same world than the training set, so the models never saw them. PSNR / SSIM of "
        "every generated novel view (and, for tiny_sv4d2, every frame) against the renderer's exact truth at the "
        "same camera and time, beside two baselines: copying the input view, and the mean training image. The "
        "margin is the model's PSNR minus the better baseline's; ± its standard error over objects (the spread of "
        "the per-object margins / sqrt(objects)).",
        "",
        "| model | scored on | model PSNR / SSIM | copy input view | mean training image | margin |",
        "|---|---|---|---|---|---|",
    ]
    for name in ("tiny_sv3d", "tiny_sv4d2"):
        if name in results:
            lines += novel_view_rows(name, results[name], OBJECTS[name]["objects"])
    if "tiny_sv4d2" in results:
        change = results["tiny_sv4d2"]["frame-to-frame change"]
        lines += ["", f"Temporal consistency of tiny_sv4d2: the mean frame-to-frame change of the generated novel-view "
                      f"videos is {change['model']:.4f} against {change['truth']:.4f} for the truth (pixel units "
                      f"in [0, 1])."]
    if "tiny_i2v" in results:
        i2v = results["tiny_i2v"]
        buckets = ", ".join(f"{bucket}: {motion * 1000:.1f}" for bucket, motion in
                            i2v["measured motion by motion_bucket_id"].items())
        lines += ["", f"tiny_i2v ({OBJECTS['tiny_i2v']['objects']} held-out first frames, each at 5 motion buckets): "
                      f"frame 0 against the input image {i2v['frame 0 psnr']:.2f} dB PSNR / "
                      f"{i2v['frame 0 ssim']:.3f} SSIM. Measured motion (`scenes.measure_motion`, in thousandths "
                      f"of the frame height per frame) by motion_bucket_id: {buckets}. Spearman's rank correlation "
                      f"between the bucket asked for and the motion measured, over every clip: "
                      f"{i2v['spearman(motion_bucket_id, measured motion)']:.2f}."]
    if "tiny_image" in results:
        image = results["tiny_image"]
        scores = ", ".join(f"{key} {value:.0%}" for key, value in image.items() if key.startswith("samples"))
        lines += ["", f"tiny_image: a small CNN trained on real shapes names the shape of generated samples; it is "
                      f"right on {image['classifier on real shapes']:.0%} of real shapes. Samples asked for each "
                      f"class: {scores}."]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("recipes", nargs="*", help=f"any of {', '.join(EVALUATIONS)} (default: all)")
    parser.add_argument("--report", action="store_true", help="only rewrite docs/benchmarks.md")
    parser.add_argument("--weights", type=Path, help="score this model file of one recipe; the docs stay as they are")
    args = parser.parse_args()
    unknown = [recipe for recipe in args.recipes if recipe not in EVALUATIONS]
    if unknown:
        parser.error(f"unknown recipes {unknown}; choose from {', '.join(EVALUATIONS)}")
    if args.weights and (len(args.recipes) != 1 or args.report):
        parser.error("--weights scores one recipe's model file: name exactly that recipe, without --report")
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "2")))
    RESULTS.mkdir(exist_ok=True)
    if args.weights:
        print(json.dumps(evaluate(args.recipes[0], args.weights), indent=1))
        return
    if not args.report:
        for recipe in args.recipes or list(EVALUATIONS):
            print(recipe, json.dumps(evaluate(recipe), indent=1), flush=True)
    results = {recipe: json.loads((RESULTS / f"quality_{recipe}.json").read_text()) for recipe in EVALUATIONS
               if (RESULTS / f"quality_{recipe}.json").exists()}
    write_section("quality", report(results))
    print(report(results))


if __name__ == "__main__":
    main()
