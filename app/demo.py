"""`make demo`: train on a generated sample, then mine + infer with the trained model, on CPU.

Usage: python app/demo.py [DIR] [--quick]  (DIR defaults to demo-run). Prints where the outputs are and a
summary. ``--quick`` uses tiny settings (seconds, a model that detects little): the tests run it.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

APP = Path(__file__).resolve().parent
sys.path.insert(0, str(APP))

from executor import sample  # noqa: E402
from executor.protocol import load_template  # noqa: E402

# The sample's annotations are ark files; config.yaml must say so (an absent export_format means voc:raw).
TRAINING = {"model": "yolo11n", "epochs": 40, "img_size": 128, "batch_size_per_gpu": 16, "num_workers_per_gpu": 2,
            "save_period": 10, "patience": 0, "close_mosaic": 10, "export_format": "ark:raw"}
MINING = {"img_size": 128, "num_workers_per_gpu": 2}  # mining_algorithm: the template's default
QUICK_TRAINING = {"epochs": 2, "img_size": 64, "save_period": 1, "close_mosaic": 1, "num_workers_per_gpu": 0}
QUICK_MINING = {"img_size": 64, "num_workers_per_gpu": 0}


def run(root: Path, tasks: list[str], config: dict) -> float:
    env_path = sample.write_task(root, tasks, config)
    start = time.time()
    code = subprocess.call([sys.executable, str(APP / "start.py")], env={**os.environ, "DEFAULT_ENV_FILE_PATH": str(env_path)})
    if code:
        sys.exit(f"demo: {', '.join(tasks)} failed (exit {code}); see the log above and {root / 'out' / 'monitor.txt'}")
    return time.time() - start


def keep(out: Path, target: Path) -> None:
    """Move a run's /out aside so the next run starts with an empty one."""
    shutil.rmtree(target, ignore_errors=True)
    os.replace(out, target)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dir", nargs="?", default="demo-run")
    parser.add_argument("--quick", action="store_true", help="tiny settings, for the tests")
    args = parser.parse_args()
    root = Path(args.dir).resolve()
    if not (root / "in" / "train-index.tsv").exists():
        sample.generate(root, *((24, 8, 12) if args.quick else (160, 40, 60)))
    train_out, mine_out = root / "out-training", root / "out-mining-infer"
    train_time = run(root, ["training"], {**TRAINING, **(QUICK_TRAINING if args.quick else {})})
    keep(root / "out", train_out)
    models = sorted(str(p) for p in (train_out / "models").iterdir() if p.is_file())
    mine_time = run(root, ["mining", "infer"], {**MINING, **(QUICK_MINING if args.quick else {}),
                                                "model_params_path": models})
    keep(root / "out", mine_out)

    import yaml

    result = yaml.safe_load(open(train_out / "models" / "result.yaml"))
    best = result["best_stage_name"]
    detection = json.load(open(mine_out / "infer-result.json"))["detection"]
    boxes = sum(len(v["boxes"]) for v in detection.values())
    top = (mine_out / "result.tsv").read_text().splitlines()[:3]
    algorithm = load_template("mining")["mining_algorithm"]
    print("\n==== demo summary ====")
    print(f"training:     {train_time:.0f} s, best stage '{best}' mAP@0.5 {result['model_stages'][best]['mAP']:.3f}")
    print(f"              {train_out / 'models' / 'result.yaml'}  (tensorboard: {train_out / 'tensorboard'})")
    print(f"mining+infer: {mine_time:.0f} s, {len(detection)} candidates ({algorithm}, the template's default), "
          f"{boxes} boxes at conf 0.25")
    print(f"              {mine_out / 'result.tsv'}  {mine_out / 'infer-result.json'}")
    print("top mined:    " + "\n              ".join(top))


if __name__ == "__main__":
    main()
