"""Does ``reduced_decode`` cost accuracy? One whole-image model, its test canvases decoded three ways.

Data: ``small_objects``' canvases (cut from shipped photos, small shapes under 2 % of the side and large
ones over 8 %), train, validation and test splits; one model trained whole-image by the executor's own
training task (Ultralytics' loader shrinks the training images from full resolution, INTER_LINEAR while
augmenting). Then the infer task on the test canvases, conf 0.001, scored as ``small_objects`` scores:
  full:     the default, the full decode and a linear shrink to ``img_size`` (what the model trained on);
  reduced:  ``reduced_decode: true`` (here 1/4 of the side, then a linear shrink by 1.5x);
  coarse:   the negative control, every canvas decoded at 1/8 whatever the letterbox needs (below it, so
            upscaled: detail lost), to show the instrument sees a decode that loses detail.
Positive control: the full decode must find the large objects (mAP@0.5 >= ``small_objects.CONTROL``).
Reading: reduced costs nothing measurable when it is within the noise of full while coarse is not.

Usage: python bench/reduced_decode.py [--epochs 400] [--seed 0] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from common import machine, run_tasks
from small_objects import CONTROL, NAMES, infer_predictions, make_task, scores


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=400)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json")
    args = parser.parse_args()
    width, height, small, img_size = 960, 720, (10, 16), 160
    from executor import engine

    results: dict = {"machine": machine(), "canvas": [width, height], "img_size": img_size, "epochs": args.epochs,
                     "seed": args.seed}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        truth = make_task(root, {"train": 12, "val": 4, "test": 12}, width, height, small, args.seed)
        run_tasks(root, ["training"], {"model": "yolo11n", "epochs": args.epochs, "img_size": img_size,
                                       "batch_size_per_gpu": 16, "num_workers_per_gpu": 2, "optimizer": "AdamW",
                                       "lr0": 0.002, "mosaic": 0.0, "save_period": 0, "patience": 0,
                                       "export_format": "ark:raw", "class_names": NAMES})
        model = root / "model.pt"
        model.write_bytes((root / "out" / "models" / "best.pt").read_bytes())
        infer = {"img_size": img_size, "conf_thres": 0.001, "num_workers_per_gpu": 2, "class_names": NAMES,
                 "model_params_path": [str(model)]}
        factor = engine.reduction(next(iter(truth)), img_size)[0]
        results["factor"] = factor
        real = engine.reduction
        for arm, extra in (("full", {}), ("reduced", {"reduced_decode": True}), ("coarse", {"reduced_decode": True})):
            if arm == "coarse":  # the workers fork from this process, so they decode with the patched choice
                engine.reduction = lambda path, size: (8, *real(path, size)[1:])
            try:
                run_tasks(root, ["infer"], {**infer, **extra})
            finally:
                engine.reduction = real
            results[arm] = scores(infer_predictions(root, truth), truth, width, height)
            print(f"arm {arm}: mAP@0.5 small {results[arm]['small']:.4f}, large {results[arm]['large']:.4f}", flush=True)
    results["control_passed"] = results["full"]["large"] >= CONTROL
    print(f"\nmachine: {machine()}; 12 test canvases of {width}x{height} at {img_size} px (reduced: 1/{factor} of the "
          f"side), model trained {args.epochs} epochs, seed {args.seed}; control (full finds large objects, mAP >= "
          f"{CONTROL}): {'PASS' if results['control_passed'] else 'FAIL: the run cannot judge'}")
    print("| decode | mAP@0.5 small | mAP@0.5 large |\n| --- | --- | --- |")
    for arm in ("full", "reduced", "coarse"):
        print(f"| {arm} | {results[arm]['small']:.4f} | {results[arm]['large']:.4f} |")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
