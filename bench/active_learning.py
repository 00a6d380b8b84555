"""Active learning: does a mining algorithm pick images worth labelling, better than random?

One benchmark seed = one data draw (``digits.build``: handwritten digits on photo canvases) and one
seed model, trained from scratch on the small labelled seed set. Then, with **common random numbers**:
every arm ranks the pool with that same seed model, adds its top-B images (with their labels) to the seed
set, and is fine-tuned from that same seed checkpoint with the same training seed for a fixed number of
epochs (no early stopping, no checkpoint picking); the last weights are evaluated once on a large,
class-balanced test set whose glyphs no pool image holds (mAP@0.5 and per-class AP@0.5).

Arms: each mining algorithm; ``random`` and ``random:1`` (two random draws: the noise floor); ``oracle``,
the positive control, which ranks the pool by the seed model's true errors against the ground truth
(missed, wrong-class and false boxes at IoU 0.5, boxes from 0.25), one image per scene. If the oracle does
not beat random by clearly more than the two draws differ, the benchmark cannot judge anything.

Tier 0 (no training, seconds): for each arm's top-B, the seed model's true errors and what the top-B
holds (near-duplicates, empty canvases, rare-class digits): does a score find the model's mistakes at all?

Usage: python bench/active_learning.py [--mode cpu|gpu] [--seeds 1] [--first-seed 0] [--arms random,random:1,oracle,...]
           [--tier0-only | --finetune random,random:1,oracle] [--json out.json] [--gpu 0] [--data digits.npz] [--deadline SECONDS]
       python bench/active_learning.py --report a.json [b.json ...] [--primary entropy] [--only random,random:1,ARM]
       python bench/active_learning.py --save-data digits.npz   (glyphs and photos, for a machine without scikit-learn)
The data comes from scikit-learn (`pip install scikit-learn` in .venv; a benchmark-only dependency, not in
requirements-dev.txt) unless --data names an .npz written by --save-data.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import itertools
import json
import random
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import digits
import yaml
from common import commit, machine, run_tasks, sample, save_result

# Two sizes of one design: "cpu" fits this project's 2-core machine, "gpu" a bigger pool and budget. The cpu
# size is set so that picks matter: a seed model that finds digits (test mAP@0.5 >= 0.30 needs about 120 epochs
# from scratch on 50 images) and arms fine-tuned long enough (20 epochs) to learn from what was added.
MODES = {
    "cpu": {"sizes": {"seed": 50, "scenes": 6, "duplicates": 150, "empty": 180, "pool": 600, "val": 30, "test": 700},
            "budget": 100, "seed_epochs": 120, "arm_epochs": 20},
    "gpu": {"sizes": {"seed": 200, "scenes": 8, "duplicates": 200, "empty": 80, "pool": 800, "val": 50, "test": 700},
            "budget": 100, "seed_epochs": 80, "arm_epochs": 20},
    # users' proportions (issue 43): a pool 10x the labels mined over 4 rounds, a few per cent of it per round,
    # near-duplicates (a quarter, 25 copies per scene as in "cpu") and empty frames (30 %) at the "cpu" rates
    "large": {"sizes": {"seed": 50, "scenes": 30, "duplicates": 750, "empty": 900, "pool": 3000, "val": 30, "test": 700},
              "budget": 75, "seed_epochs": 120, "arm_epochs": 20},
    # the instrument end to end in a few minutes, no figure: one epoch per model
    "smoke": {"sizes": {"seed": 10, "scenes": 2, "duplicates": 6, "empty": 6, "pool": 30, "val": 6, "test": 30},
              "budget": 5, "seed_epochs": 1, "arm_epochs": 1},
}
SIZES, BUDGET, SEED_EPOCHS, ARM_EPOCHS = MODES["cpu"]["sizes"], MODES["cpu"]["budget"], 120, 20
IMG = 128
# Every model the benchmark trains (template keys). Measured on seed 300 (120 epochs, 50 images, test mAP@0.5):
# batch 16 with the template's optimizer "auto" and mosaic 0.118; AdamW 0.002, batch 8: 0.191; with mosaic 0.5
# and scale 0.3: 0.301; with mosaic off: 0.392 (a 4-image mosaic at 128 px shrinks the digits below what the
# model learns from). Mosaic off makes close_mosaic moot. The pool: a quarter near-duplicates of 6 scenes and 30 %
# empty frames (a camera between events): what a pick can waste, and so what a good ranking gains; with 10 %
# empty frames the oracle stayed within 1.5x the noise floor (pilot 2).
RECIPE = {"batch_size_per_gpu": 8, "optimizer": "AdamW", "lr0": 0.002, "mosaic": 0.0, "scale": 0.3}
ORACLE_CONF = 0.25
# An arm is NAME[:K][+b]: the algorithm, the K-th extra draw (seed + 1000 K), and "+b" for mining_budget = B;
# without "+b" the template's mining_budget (what a user who keeps the defaults gets).
MINERS = ["diversity", "diversity+b", "ppal", "ppal+b", "cald", "cald+b", "entropy", "aldd"]
ARMS = ["random", "random:1", "oracle", *MINERS]  # in the order they run: the controls first


# ---------------------------------------------------------------- data on disk

def write_split(root: Path, name: str, scenes: list[digits.Scene]) -> list[str]:
    """Images and ark annotations under root/in; returns index lines (image TAB annotation)."""
    lines = []
    for scene in scenes:
        image = sample.save_asset(root / "in" / "assets", scene.image)
        annotation = root / "in" / "annotations" / name / f"{image.stem}.txt"
        sample.write_annotation(annotation, "ark", scene.boxes, scene.image.size)
        lines.append(f"{image}\t{annotation}")
    return lines


def write_yolo_set(root: Path, scenes: list[digits.Scene]) -> Path:
    """The test set in Ultralytics' own layout, for its validator (evaluated once per arm)."""
    images, labels = root / "test" / "images", root / "test" / "labels"
    images.mkdir(parents=True)
    labels.mkdir(parents=True)
    for i, scene in enumerate(scenes):
        scene.image.save(images / f"{i:05d}.png")
        w, h = scene.image.size
        (labels / f"{i:05d}.txt").write_text("".join(
            f"{c} {(x1 + x2) / 2 / w:.6f} {(y1 + y2) / 2 / h:.6f} {(x2 - x1) / w:.6f} {(y2 - y1) / h:.6f}\n"
            for c, x1, y1, x2, y2 in scene.boxes))
    data = root / "test" / "data.yaml"
    data.write_text(yaml.safe_dump({"path": str(root / "test"), "train": "images", "val": "images",
                                    "names": dict(enumerate(digits.CLASSES))}))
    return data


def ark_rows(annotation: str) -> list[list[int]]:
    return [[int(float(v)) for v in row.split(",")[:5]] for row in Path(annotation).read_text().splitlines()]


# ---------------------------------------------------------------- the executor, as YMIR runs it

def base_config(gpu: str) -> dict:
    return {"class_names": digits.CLASSES, "gpu_id": gpu, "gpu_count": len(gpu.split(",")) if gpu else 0}


ARM_SEED = 0  # --train-seed: the arms' training seed (the seed models always train with 0)


def train(root: Path, labelled: list[str], val: list[str], start: Path | None, epochs: int, gpu: str) -> Path:
    """Train with the executor; returns a copy of the last weights (fixed epochs: nothing is picked)."""
    (root / "in" / "train-index.tsv").write_text("\n".join(labelled) + "\n")
    (root / "in" / "val-index.tsv").write_text("\n".join(val) + "\n")
    config = {**base_config(gpu), "epochs": epochs, "img_size": IMG, "num_workers_per_gpu": 2, "save_period": 0,
              "patience": 0, "close_mosaic": max(1, epochs // 3), "export_format": "ark:raw", "seed": ARM_SEED if start else 0,
              "fliplr": 0.0, **RECIPE}  # fliplr 0: a mirrored digit is another glyph
    if start is not None:
        config["pretrained_model_params"] = [str(start)]
    run_tasks(root, ["training"], config)
    result = yaml.safe_load(open(root / "out" / "models" / "result.yaml"))
    kept = root / "models" / f"{time.time_ns()}.pt"
    kept.parent.mkdir(exist_ok=True)
    shutil.copyfile(root / "out" / "models" / result["model_stages"]["last"]["files"][0], kept)
    return kept


def evaluate(weights: Path, data: Path, gpu: str) -> tuple[float, list[float]]:
    """mAP@0.5 and AP@0.5 per class on the test set (Ultralytics' validator, as training reports mAP)."""
    from ultralytics import YOLO

    metrics = YOLO(str(weights)).val(data=str(data), imgsz=IMG, batch=32, conf=0.001, iou=0.6, plots=False,
                                     verbose=False, workers=2, device=gpu or "cpu", project=str(data.parent / "val"))
    per_class = [0.0] * len(digits.CLASSES)
    for i, c in enumerate(metrics.box.ap_class_index):
        per_class[int(c)] = float(metrics.box.ap50[i])
    return float(metrics.box.map50), per_class


def parse_arm(arm: str) -> tuple[str, int, bool]:
    """``NAME[:K][+b]`` -> (algorithm, draw K, whether mining_budget is B)."""
    name, at_budget = (arm[:-2], True) if arm.endswith("+b") else (arm, False)
    algorithm, _, draw = name.partition(":")
    return algorithm, int(draw or 0), at_budget


def mine(root: Path, pool: list[str], model: Path, arm: str, seed: int, gpu: str) -> list[str]:
    """The executor's ranking of the whole pool, as a user configures the arm (see ``parse_arm``)."""
    algorithm, draw, at_budget = parse_arm(arm)
    by_image = {line.split("\t")[0]: line for line in pool}
    (root / "in" / "candidate-index.tsv").write_text("\n".join(by_image) + "\n")
    config = {**base_config(gpu), "mining_algorithm": algorithm, "img_size": IMG, "num_workers_per_gpu": 2,
              "model_params_path": [str(model)], "seed": seed + 1000 * draw}
    if at_budget:
        config["mining_budget"] = BUDGET
    run_tasks(root, ["mining"], config)
    return [by_image[line.split("\t")[0]] for line in (root / "out" / "result.tsv").read_text().splitlines()]


def model_errors(root: Path, pool: list[str], model: Path, gpu: str) -> dict[str, int]:
    """Per pool line, the seed model's true errors: ground-truth digits it misses or names wrong, and boxes
    that find no digit (IoU 0.5, boxes from ``ORACLE_CONF``), from the executor's own infer."""
    import torch
    from torchvision.ops import box_iou

    (root / "in" / "candidate-index.tsv").write_text("\n".join(line.split("\t")[0] for line in pool) + "\n")
    run_tasks(root, ["infer"], {**base_config(gpu), "img_size": IMG, "num_workers_per_gpu": 2,
                                "model_params_path": [str(model)], "conf_thres": ORACLE_CONF})
    found = json.loads((root / "out" / "infer-result.json").read_text())["detection"]
    errors = {}
    for line in pool:
        image, annotation = line.split("\t")
        boxes = sorted(found[Path(image).name]["boxes"], key=lambda b: -b["score"])
        truth = ark_rows(annotation)
        iou = box_iou(torch.tensor([[b["box"]["x"], b["box"]["y"], b["box"]["x"] + b["box"]["w"],
                                     b["box"]["y"] + b["box"]["h"]] for b in boxes], dtype=torch.float32).reshape(-1, 4),
                      torch.tensor([r[1:] for r in truth], dtype=torch.float32).reshape(-1, 4))
        matched: set[int] = set()
        wrong = false = 0
        for i, box in enumerate(boxes):  # greedy by score, as detection metrics match
            free = [j for j in range(len(truth)) if j not in matched and float(iou[i, j]) >= 0.5]
            if not free:
                false += 1
                continue
            j = max(free, key=lambda j: float(iou[i, j]))
            matched.add(j)
            wrong += box["class_name"] != digits.CLASSES[truth[j][0]]
        errors[line] = (len(truth) - len(matched)) + wrong + false
    return errors


def oracle(pool: list[str], errors: dict[str, int], facts: dict, seed: int) -> list[str]:
    """The pool by the seed model's true errors, most first (ties in a seeded random order), one image per
    scene: a near-duplicate of a scene already listed goes after every first copy. Ranked by errors alone, the
    control took 33 copies of one hard scene in its top 60 (pilot seed 302) and lost to random: labels spent
    on copies teach nothing new, so that arm is no control that must win."""
    rng = random.Random(seed)
    ranked = sorted(pool, key=lambda line: (-errors[line], rng.random()))
    seen: set[int] = set()
    first, later = [], []
    for line in ranked:
        source = facts[line].source
        (later if source >= 0 and source in seen else first).append(line)
        seen.add(source)
    return first + later


# ---------------------------------------------------------------- one benchmark seed

CACHE: Path | None = None  # --cache: seed models kept across runs (training is deterministic)


def cached_seed_model(seed: int, make) -> Path:
    """The seed model from ``CACHE`` when a run with the same seed, sizes, epochs and recipe made it, else ``make()``
    (and kept there)."""
    if CACHE is None:
        return make()
    key = hashlib.sha1(json.dumps([seed, SIZES, SEED_EPOCHS, RECIPE, IMG], sort_keys=True).encode()).hexdigest()[:16]
    kept = CACHE / f"seed-{seed}-{key}.pt"
    if not kept.exists():
        CACHE.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(make(), kept)
    return kept


def seed_setup(root: Path, seed: int, gpu: str, data_file: str | None, started: float):
    """One benchmark seed's data under ``root`` (index lines per split, the pool's scenes by line, the test set)
    and its seed model with that model's test mAP@0.5 and per-class AP: what every arm starts from."""
    splits = digits.build(seed, SIZES, data_file)
    lines = {name: write_split(root, name, scenes) for name, scenes in splits.items() if name != "test"}
    facts = {line: scene for line, scene in zip(lines["pool"], splits["pool"], strict=True)}
    test = write_yolo_set(root, splits["test"])
    seed_model = cached_seed_model(seed, lambda: train(root, lines["seed"], lines["val"], None, SEED_EPOCHS, gpu))
    seed_map, seed_ap = evaluate(seed_model, test, gpu)
    print(f"seed {seed}: seed model test mAP@0.5 {seed_map:.3f} ({time.time() - started:.0f} s)", flush=True)
    return lines, facts, test, seed_model, seed_map, seed_ap


@contextlib.contextmanager
def seed_root(seed: int, base: Path | None = None):
    """This seed's /in and /out, at one path in every run: ``random``'s score and ``cald``'s cutouts hash each
    image's path, so a rerun draws what the first run drew (a fresh temporary folder per run drew anew). The path
    is locked while a run uses it (the lock dies with the process, so a killed run leaves nothing to clear); a
    second run of the same seed at once stops with a message."""
    root = (base or Path(tempfile.gettempdir())) / f"ymir-al-seed-{seed}"
    root.parent.mkdir(parents=True, exist_ok=True)
    with open(root.parent / f"{root.name}.lock", "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise SystemExit(f"{root} is in use by another run of seed {seed}: run one seed once at a time") from None
        shutil.rmtree(root, ignore_errors=True)  # what a killed run left
        root.mkdir()
        try:
            yield root
        finally:
            shutil.rmtree(root, ignore_errors=True)


def run_seed(seed: int, arms: list[str], gpu: str, data_file: str | None, finetune: list[str], deadline: float,
             save=lambda result: None) -> dict:
    """One benchmark seed: tier 0 for ``arms``, then fine-tuning for those of them in ``finetune``; ``save`` gets
    the result after each arm; no arm starts after ``deadline`` (epoch s)."""
    started = time.time()
    with seed_root(seed) as root:
        lines, facts, test, seed_model, seed_map, seed_ap = seed_setup(root, seed, gpu, data_file, started)
        errors = model_errors(root, lines["pool"], seed_model, gpu)
        picks, tier0 = {}, {}
        for arm in arms:
            ranked = (oracle(lines["pool"], errors, facts, seed) if arm == "oracle"
                      else mine(root, lines["pool"], seed_model, arm, seed, gpu))
            picks[arm] = ranked[:BUDGET]
            tier0[arm] = composition(picks[arm], facts, errors)
            print(f"seed {seed} {arm:10s} top-{BUDGET}: {describe(tier0[arm])}", flush=True)
        result = {"seed": seed, "seed_map": seed_map, "seed_ap": seed_ap, "tier0": tier0, "test": {},
                  "pool_errors": sum(errors.values())}
        save(result)
        for arm in [a for a in arms if a in finetune]:
            if time.time() > deadline:
                print(f"seed {seed}: deadline reached, {arm} and later arms not run", flush=True)
                break
            twin = next((a for a in result["test"] if picks[a] == picks[arm]), None)
            if twin is not None:  # the same top-B in the same order: training is deterministic, so the same model
                result["test"][arm] = {**result["test"][twin], "same_picks_as": twin}
                print(f"seed {seed} {arm:10s} picks what {twin} picks: its result", flush=True)
                continue
            weights = train(root, lines["seed"] + picks[arm], lines["val"], seed_model, ARM_EPOCHS, gpu)
            mAP, ap = evaluate(weights, test, gpu)
            result["test"][arm] = {"map50": mAP, "ap50": ap}
            print(f"seed {seed} {arm:10s} test mAP@0.5 {mAP:.4f} (rare {', '.join(f'{ap[c]:.3f}' for c in digits.RARE)}; "
                  f"{time.time() - started:.0f} s)", flush=True)
            result["seconds"] = time.time() - started
            save(result)
        result["seconds"] = time.time() - started
        return result


def composition(picked: list[str], facts: dict, errors: dict[str, int] | None) -> dict[str, int]:
    """What a top-B holds; the model's errors in it only where they were computed (``errors``)."""
    found = {} if errors is None else {"errors": sum(errors[line] for line in picked),
                                       "with_errors": sum(errors[line] > 0 for line in picked)}
    return {**found,
            "duplicates": sum(facts[line].kind == "duplicate" for line in picked),
            "empty": sum(facts[line].kind == "empty" for line in picked),
            "digits": sum(len(facts[line].boxes) for line in picked),
            "rare": sum(b[0] in digits.RARE for line in picked for b in facts[line].boxes)}


def scene_copies(rounds: list[list[int]]) -> list[dict[str, int]]:
    """Per round, from the scene of each near-duplicate picked (``Scene.source``; the pool holds only copies of
    those scenes): how many copy a scene picked in an earlier round (labelled before this round's mining) and how
    many more copy a scene this round already has."""
    labelled: set[int] = set()
    out = []
    for sources in rounds:
        before = sum(source in labelled for source in sources)
        new = [source for source in sources if source not in labelled]
        out.append({"near_duplicates": len(sources), "of_labelled_scenes": before, "within_round": len(new) - len(set(new))})
        labelled |= set(sources)
    return out


def labelled_copies(folders: list[str], data_file: str | None) -> dict:
    """``--labelled-copies``: ``scene_copies`` of every arm's cached rounds (``RoundCache`` folders, each named
    ``rounds-SEED-KEY``, given as FOLDER=LABEL, the label saying which commit ran them); the pool rebuilt per seed."""
    found: dict = {}
    scenes_of: dict[int, dict[str, digits.Scene]] = {}
    for spec in folders:
        folder, _, label = spec.partition("=")
        seed = int(Path(folder).name.split("-")[1])
        if seed not in scenes_of:
            with tempfile.TemporaryDirectory() as tmp:  # the pool's file names, as write_split names them
                scenes_of[seed] = {sample.save_asset(Path(tmp), scene.image).stem: scene
                                   for scene in digits.build(seed, SIZES, data_file)["pool"]}
        arms: dict[str, list[dict[str, int]]] = {}
        for first in sorted(Path(folder).glob("*-1.json")):
            arm = first.name.removesuffix("-1.json")
            rounds = []
            for r in itertools.count(1):
                kept = Path(folder) / f"{arm}-{r}.json"
                if not kept.exists():
                    break
                picked = [Path(line.split("\t")[0]).stem for line in json.loads(kept.read_text())["picked"]]
                rounds.append([scenes_of[seed][stem].source for stem in picked
                               if scenes_of[seed][stem].kind == "duplicate"])
            arms[arm] = scene_copies(rounds)
            print(f"seed {seed} {label or folder} {arm}: " + "; ".join(
                f"round {i + 1}: {c['of_labelled_scenes']} of labelled scenes, {c['within_round']} within the round, "
                f"{c['near_duplicates']} near-duplicates" for i, c in enumerate(arms[arm])))
        found.setdefault(str(seed), {})[label or folder] = arms
    return found


def describe(c: dict[str, int]) -> str:
    """A top-B's ``composition``; the model's errors where they were computed."""
    found = f"{c['errors']} model errors in {c['with_errors']} images; " if "errors" in c else ""
    return f"{found}{c['duplicates']} near-duplicates, {c['empty']} empty, {c['digits']} digits ({c['rare']} rare)"


# ---------------------------------------------------------------- several rounds, as YMIR iterates (issue 35)

ROUND_SEED = 100  # round r mines with seed + ROUND_SEED x (r - 1): round 1 is the one-round benchmark's pick


def arm_rounds(arm: str, rounds: int, seed_model: Path, seed_lines: list[str], pool: list[str], rank, fit,
               deadline: float = float("inf"), done=lambda r: None):
    """One arm over ``rounds`` rounds of YMIR's loop: the model of the round before ranks what is left of the
    pool (``rank(arm, pool, model, r)``), its top-B joins the labelled set, and the next model is fine-tuned
    from the one before on everything labelled so far (``fit(labelled, start)`` returns the weights). Yields
    ``(round, picked, labelled, model)`` after each round; no round starts after ``deadline`` (epoch s).
    ``done(r)``: round r's ``(picked, model)`` from an earlier run (``RoundCache``), or None to run it."""
    model, labelled, left = seed_model, list(seed_lines), list(pool)
    for r in range(1, rounds + 1):
        earlier = done(r)
        if earlier is None and time.time() > deadline:
            print(f"{arm}: deadline reached before round {r}", flush=True)
            return
        picked = earlier[0] if earlier else rank(arm, left, model, r)[:BUDGET]
        chosen = set(picked)
        left = [line for line in left if line not in chosen]
        labelled = labelled + picked
        model = earlier[1] if earlier else fit(labelled, model)
        yield r, picked, labelled, model


class RoundCache:
    """Each arm's rounds kept in ``CACHE`` (``--cache``) as they finish: the round's picks (index lines), record
    and model, so that a run stopped by a session's end resumes where it stopped. Keyed by the seed, the mode's
    sizes and budget, the recipe and the executor's code (``code_version``): a change to any of them runs anew."""

    def __init__(self, seed: int, root: Path) -> None:
        self.root = root  # this run's temporary /in: index lines name files under it, stored relative to it
        key = json.dumps([seed, SIZES, BUDGET, SEED_EPOCHS, ARM_EPOCHS, RECIPE, IMG, ARM_SEED, code_version()], sort_keys=True)
        self.folder = CACHE / f"rounds-{seed}-{hashlib.sha1(key.encode()).hexdigest()[:16]}" if CACHE else None

    def get(self, arm: str, r: int) -> tuple[list[str], Path, dict] | None:
        """Round r of ``arm`` as an earlier run left it: (picked lines, model, record), or None."""
        if self.folder is None or not (self.folder / f"{arm}-{r}.json").exists():
            return None
        kept = json.loads((self.folder / f"{arm}-{r}.json").read_text())
        picked = [line.replace("{root}", str(self.root)) for line in kept["picked"]]
        return picked, self.folder / f"{arm}-{r}.pt", kept["record"]

    def put(self, arm: str, r: int, picked: list[str], model: Path, record: dict) -> None:
        if self.folder is None:
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(model, self.folder / f"{arm}-{r}.pt.tmp")
        (self.folder / f"{arm}-{r}.pt.tmp").replace(self.folder / f"{arm}-{r}.pt")
        atomic_json(self.folder / f"{arm}-{r}.json",
                    {"picked": [line.replace(str(self.root), "{root}") for line in picked], "record": record})


def code_version() -> str:
    """A hash of the executor's code as it is on disk (the app folder): what every arm's mining and training run."""
    digest = hashlib.sha1()
    for path in sorted((Path(__file__).resolve().parents[1] / "app").rglob("*.py")):
        digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def atomic_json(path: Path, payload: dict) -> None:
    """Written beside, then renamed over: a run killed mid-write leaves the previous file whole."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(payload, indent=1))
    tmp.replace(path)


def run_rounds(seed: int, arms: list[str], rounds: int, gpu: str, data_file: str | None, deadline: float,
               save=lambda result: None) -> dict:
    """One benchmark seed over ``rounds`` rounds: every arm from the same seed model (as ``run_seed``), each
    round's test mAP@0.5 against the labelled count; ``save`` gets the result after every round."""
    started = time.time()
    with seed_root(seed) as root:
        lines, facts, test, seed_model, seed_map, seed_ap = seed_setup(root, seed, gpu, data_file, started)
        result = {"seed": seed, "seed_map": seed_map, "seed_ap": seed_ap, "labelled": len(lines["seed"]),
                  "rounds": {}}
        errors: dict[str, int] = {}

        def rank(arm: str, left: list[str], model: Path, r: int) -> list[str]:
            round_seed = seed + ROUND_SEED * (r - 1)
            errors.clear()  # the model's errors on what is left: computed for the oracle alone
            if arm != "oracle":
                return mine(root, left, model, arm, round_seed, gpu)
            errors.update(model_errors(root, left, model, gpu))
            return oracle(left, errors, facts, round_seed)

        def fit(labelled: list[str], start: Path) -> Path:
            return train(root, labelled, lines["val"], start, ARM_EPOCHS, gpu)

        cache = RoundCache(seed, root)

        def done(arm: str, r: int) -> tuple[list[str], Path] | None:
            earlier = cache.get(arm, r)
            return earlier[:2] if earlier else None

        for arm in arms:
            history = result["rounds"].setdefault(arm, [])
            for r, picked, labelled, model in arm_rounds(arm, rounds, seed_model, lines["seed"], lines["pool"], rank,
                                                         fit, deadline, lambda r, arm=arm: done(arm, r)):
                earlier = cache.get(arm, r)
                if earlier is not None:
                    history.append(earlier[2])
                else:
                    mAP, ap = evaluate(model, test, gpu)
                    history.append({"round": r, "labelled": len(labelled), "map50": mAP, "ap50": ap,
                                    "picks": composition(picked, facts, errors or None)})
                    cache.put(arm, r, picked, model, history[-1])
                print(f"seed {seed} {arm:10s} round {r}: {len(labelled)} labelled, test mAP@0.5 {history[-1]['map50']:.4f} "
                      f"({describe(history[-1]['picks'])}; {time.time() - started:.0f} s{'; from the cache' if earlier else ''})",
                      flush=True)
                result["seconds"] = time.time() - started
                save(result)
        result["seconds"] = time.time() - started
        return result


def curves(results: list[dict]) -> tuple[list[int], dict[str, list[list[float]]]]:
    """The labelled counts (seed set, then after each round) and per arm, per seed, test mAP@0.5 at each count
    (the seed model's first); ``random`` is the mean of the two random draws. Only seeds and rounds every
    arm completed."""
    arms = [a for a in results[0]["rounds"] if a != "random:1"]
    done = min(len(r["rounds"][a]) for r in results for a in r["rounds"])
    counts = [results[0]["labelled"]] + [results[0]["rounds"][arms[0]][i]["labelled"] for i in range(done)]
    out: dict[str, list[list[float]]] = {}
    for arm in arms:
        out[arm] = []
        for r in results:
            if arm == "random" and "random:1" in r["rounds"]:
                maps = [(a["map50"] + b["map50"]) / 2 for a, b in zip(r["rounds"]["random"], r["rounds"]["random:1"], strict=False)]
            else:
                maps = [h["map50"] for h in r["rounds"][arm]]
            out[arm].append([r["seed_map"]] + maps[:done])
    return counts, out


def labels_to_reach(counts: list[int], curve: list[float], target: float) -> float | None:
    """Labelled images at which ``curve`` (mAP at ``counts``) first reaches ``target``, linear between rounds;
    None when it never does."""
    for i, value in enumerate(curve):
        if value >= target:
            if i == 0:
                return float(counts[0])
            before = curve[i - 1]
            return counts[i - 1] + (target - before) / (value - before) * (counts[i] - counts[i - 1])
    return None


def label_savings(counts: list[int], arm_curve: list[float], random_curve: list[float]) -> float | None:
    """The share of random's mined labels an arm does without: it reaches random's final mAP with
    ``labels_to_reach - seed set`` mined images where random mined ``counts[-1] - seed set``. None when it
    never reaches it."""
    reached = labels_to_reach(counts, arm_curve, random_curve[-1])
    return None if reached is None else 1 - (reached - counts[0]) / (counts[-1] - counts[0])


def mean_curve(per_seed: list[list[float]]) -> list[float]:
    return [statistics.mean(column) for column in zip(*per_seed, strict=True)]


def savings_interval(counts: list[int], arm: list[list[float]], rand: list[list[float]], draws: int = 10000,
                     level: float = 0.9) -> tuple[float, float]:
    """A percentile bootstrap over seeds of ``label_savings`` on the mean curves (a draw whose arm never
    reaches random's final mAP counts as 0 saved)."""
    rng = random.Random(0)
    n, values = len(arm), []
    for _ in range(draws):
        pick = [rng.randrange(n) for _ in range(n)]
        saved = label_savings(counts, mean_curve([arm[i] for i in pick]), mean_curve([rand[i] for i in pick]))
        values.append(0.0 if saved is None else saved)
    values.sort()
    return values[int((1 - level) / 2 * draws)], values[int((1 + level) / 2 * draws) - 1]


def merge_rounds(files: list[dict]) -> list[dict]:
    """The rounds results of several ``--json`` files, one per seed: a seed's arms from every file (its seed model
    and data are the same whatever the commit: ``cached_seed_model``); an arm already taken from an earlier file is
    named ``ARM@COMMIT`` (the later file's commit), so that runs of one arm at two commits stand side by side."""
    merged: dict[int, dict] = {}
    for payload in files:
        for result in payload["results"]:
            kept = merged.setdefault(result["seed"], {**result, "rounds": {}})
            if kept["seed_map"] != result["seed_map"]:
                raise SystemExit(f"seed {result['seed']}: the files' seed models differ ({kept['seed_map']} and "
                                 f"{result['seed_map']}): not one benchmark seed")
            for arm, rounds in result["rounds"].items():
                kept["rounds"][arm if arm not in kept["rounds"] else f"{arm}@{payload['commit']}"] = rounds
    return list(merged.values())


def only_arms(results: list[dict], arms: list[str] | None) -> list[dict]:
    """The results with only these arms' rounds (all of them when ``arms`` is None): seeds that ran other arms
    reported together over the arms they share."""
    if arms is None:
        return results
    missing = {a for r in results for a in arms if a not in r["rounds"]}
    if missing:
        raise SystemExit(f"--only: not every seed ran {', '.join(sorted(missing))}")
    return [{**r, "rounds": {a: r["rounds"][a] for a in arms}} for r in results]


def report_rounds(results: list[dict], default: str = "ppal", png: str | None = None) -> dict:
    """Per round, each arm's mean test mAP@0.5 and its gain over the random mean (seeds ahead), the noise floor
    and the oracle's headroom in floors; which arms fall below random by more than the floor in any round; the
    label savings of each arm on the mean curves, with a bootstrap interval; the budget curve as a PNG."""
    results = sorted(results, key=lambda r: r["seed"])
    counts, per_arm = curves(results)
    floors = [statistics.mean(abs(r["rounds"]["random"][i]["map50"] - r["rounds"]["random:1"][i]["map50"]) for r in results)
              for i in range(len(counts) - 1)]  # per round
    rand = per_arm["random"]
    print(f"\nSeeds {', '.join(str(r['seed']) for r in results)}; B = {counts[1] - counts[0]} per round (from the labelled counts)\n")
    print("| arm | " + " | ".join(f"{n} labelled" for n in counts) + " |")
    print("|---|" + "---|" * len(counts))
    summary: dict = {"counts": counts, "floors": floors, "arms": {}}
    for arm, curve in per_arm.items():
        cells = []
        below = []
        for i in range(len(counts)):
            m = statistics.mean(c[i] for c in curve)
            if i == 0 or arm == "random":
                cells.append(f"{m:.4f}")
                continue
            gains = [c[i] - b[i] for c, b in zip(curve, rand, strict=True)]
            cells.append(f"{m:.4f} ({statistics.mean(gains):+.4f}, {sum(g > 0 for g in gains)}/{len(gains)})")
            if statistics.mean(gains) < -floors[i - 1]:
                below.append(i)
        saved = None if arm == "random" else label_savings(counts, mean_curve(curve), mean_curve(rand))
        interval = None if arm == "random" else savings_interval(counts, curve, rand)
        seeds_saved = None if arm == "random" else [label_savings(counts, c, b) for c, b in zip(curve, rand, strict=True)]
        summary["arms"][arm] = {"mean": mean_curve(curve), "per_seed": curve, "below_random_in_rounds": below,
                                "label_savings": saved, "savings_interval_90": interval, "per_seed_savings": seeds_saved}
        print(f"| {arm}{' (default)' if arm == default else ''} | " + " | ".join(cells) + " |")
    print("\nnoise floor |random - random:1| per round: " + ", ".join(f"{f:.4f}" for f in floors))
    if "oracle" in per_arm:
        headroom = [statistics.mean(c[i + 1] - b[i + 1] for c, b in zip(per_arm["oracle"], rand, strict=True))
                    for i in range(len(floors))]
        summary["oracle_headroom_in_floors"] = [h / max(f, 1e-9) for h, f in zip(headroom, floors, strict=True)]
        print("oracle over the random mean, in noise floors, per round: "
              + ", ".join(f"{h:.1f}x" for h in summary["oracle_headroom_in_floors"]))
        if default in per_arm:  # the plan's fading rule: a round's share of the oracle's gain below half round 1's
            gain = [d - b for d, b in zip(mean_curve(per_arm[default]), mean_curve(rand), strict=True)][1:]
            shares = [g / h if h > 0 else float("nan") for g, h in zip(gain, headroom, strict=True)]
            summary["default_share_of_oracle"] = shares
            summary["default_fades"] = any(s < shares[0] / 2 for s in shares[1:])
            print(f"{default}'s gain as a share of the oracle's, per round: " + ", ".join(f"{s:.2f}" for s in shares)
                  + (" (fades)" if summary["default_fades"] else " (does not fade)"))
    for arm, found in summary["arms"].items():
        if arm == "random":
            continue
        saved, (low, high) = found["label_savings"], found["savings_interval_90"]
        mined, budget = counts[-1] - counts[0], counts[1] - counts[0]
        shown = "never reaches it" if saved is None else (f"{saved:.0%} fewer mined labels ({saved * mined:.0f} of "
                                                          f"{mined}, {saved * mined / budget:.1f} rounds of {budget})")
        per_seed = ", ".join("never" if v is None else f"{v:.0%}" for v in found["per_seed_savings"])
        print(f"{arm}: random's final mAP@0.5 ({mean_curve(rand)[-1]:.4f} at {counts[-1]}): {shown} "
              f"(90 % bootstrap over seeds: {low:.0%} to {high:.0%}; per seed {per_seed}); "
              f"below random in rounds: {found['below_random_in_rounds'] or 'none'}")
    summary["picks"] = picks_per_round(results, len(counts) - 1)
    for arm, kinds in summary["picks"].items():
        print(f"{arm} picks per round, mean (range over seeds): " + "; ".join(
            f"{kind} " + ", ".join(f"{statistics.mean(v):.1f} ({min(v)}-{max(v)})" for v in rounds)
            for kind, rounds in kinds.items()))
    if png:
        plot_curves(counts, per_arm, png, len(results))
    return summary


def picks_per_round(results: list[dict], rounds: int) -> dict[str, dict[str, list[list[int]]]]:
    """Per arm (each random draw apart), per kind (near-duplicates, empty frames), per round: the count in each
    seed's picks. Arms whose rounds carry no ``picks`` (older results) are left out."""
    out: dict[str, dict[str, list[list[int]]]] = {}
    for arm in results[0]["rounds"]:
        history = [r["rounds"][arm][:rounds] for r in results]
        if all("picks" in h for seed in history for h in seed):
            out[arm] = {kind: [[seed[i]["picks"][kind] for seed in history] for i in range(rounds)]
                        for kind in ("duplicates", "empty")}
    return out


def plot_curves(counts: list[int], per_arm: dict[str, list[list[float]]], png: str, seeds: int) -> None:
    """Test mAP@0.5 against labelled images, per arm: the mean over seeds and the band of one standard error."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=120)
    for arm, curve in per_arm.items():
        mean = mean_curve(curve)
        error = [statistics.stdev(col) / len(col) ** 0.5 if len(col) > 1 else 0.0 for col in zip(*curve, strict=True)]
        label = "random (mean of 2 draws)" if arm == "random" else arm
        line, = ax.plot(counts, mean, marker="o", label=label, linestyle="--" if arm in ("random", "oracle") else "-")
        ax.fill_between(counts, [m - e for m, e in zip(mean, error, strict=True)],
                        [m + e for m, e in zip(mean, error, strict=True)], color=line.get_color(), alpha=0.15)
    ax.set_xlabel("labelled images (seed set, then B per round)")
    ax.set_ylabel("test mAP@0.5")
    ax.set_title(f"Active learning over rounds ({seeds} seeds; band: ±1 standard error)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(png)


# ---------------------------------------------------------------- statistics and the table

def sign_flip_p(gains: list[float]) -> float:
    """One-sided exact paired randomization test: the share of the 2^n sign flips of the per-seed
    gains whose mean is at least the observed one (under "no better than random" every sign is a coin toss).
    Distribution-free, so a few lucky seeds cannot pass for a normal spread."""
    n = len(gains)
    if n == 0 or n > 22:
        return float("nan")
    observed = sum(gains)
    hits = sum(1 for mask in range(1 << n)
               if sum(-g if mask >> i & 1 else g for i, g in enumerate(gains)) >= observed - 1e-12)
    return hits / (1 << n)


def holm(p_values: dict[str, float]) -> dict[str, float]:
    """Holm's step-down adjusted p-values (family-wise error over the arms compared)."""
    ordered = sorted(p_values, key=p_values.get)
    adjusted, running = {}, 0.0
    for i, arm in enumerate(ordered):
        running = max(running, min(1.0, (len(ordered) - i) * p_values[arm]))
        adjusted[arm] = running
    return adjusted


def mean_error(values: list[float]) -> str:
    error = statistics.stdev(values) / len(values) ** 0.5 if len(values) > 1 else float("nan")
    return f"{statistics.mean(values):+.4f} ± {error:.4f}"


def report(results: list[dict], primary: str | None = None) -> None:
    """Tier 0 (means over seeds), then per arm: test mAP, the paired gain over the mean of the two random
    draws per seed, seeds ahead, the exact one-sided sign-flip p (Holm-adjusted over the arms that are neither
    controls nor the primary), whether its mean gain is below minus the noise floor, rare-class AP; then the
    oracle's headroom."""
    seeds = [r for r in results if r["test"]]
    print(f"\nTier 0 (top-{BUDGET} of a pool of {SIZES['pool']}; mean per seed over the seeds the arm ran)\n")
    print("| arm | seeds | seed-model errors | images with errors | near-duplicates | empty | digits | rare digits |")
    print("|---|---|---|---|---|---|---|---|")
    for arm in dict.fromkeys(a for r in results for a in r["tier0"]):
        have = [r["tier0"][arm] for r in results if arm in r["tier0"]]
        m = {k: statistics.mean(t[k] for t in have) for k in have[0]}
        print(f"| {arm} | {len(have)} | {m['errors']:.1f} | {m['with_errors']:.1f} | {m['duplicates']:.1f} | {m['empty']:.1f} | "
              f"{m['digits']:.1f} | {m['rare']:.1f} |")
    seeds = [r for r in seeds if "random" in r["test"] and "random:1" in r["test"]]
    if not seeds:
        return
    floor = [abs(r["test"]["random"]["map50"] - r["test"]["random:1"]["map50"]) for r in seeds]
    base = {r["seed"]: (r["test"]["random"]["map50"] + r["test"]["random:1"]["map50"]) / 2 for r in seeds}
    print(f"\nTest mAP@0.5 over seeds {', '.join(str(r['seed']) for r in seeds)}; seed model "
          f"{statistics.mean(r['seed_map'] for r in seeds):.4f}. Noise floor |random - random:1|: mean "
          f"{statistics.mean(floor):.4f}\n")
    print("| arm | seeds | test mAP@0.5 | vs mean of random draws | seeds ahead | one-sided p | Holm p | below random "
          "by more than the floor | per seed | rare AP (8, 9) |\n|---|---|---|---|---|---|---|---|---|---|")
    arms = list(dict.fromkeys(a for r in seeds for a in r["test"]))
    gains = {arm: [r["test"][arm]["map50"] - base[r["seed"]] for r in seeds if arm in r["test"]] for arm in arms}
    p = {arm: sign_flip_p(g) for arm, g in gains.items()}
    adjusted = holm({arm: p[arm] for arm in arms if arm not in ("random", "random:1", "oracle", primary)})
    floor_mean = statistics.mean(floor)
    for arm in arms:
        have = [r for r in seeds if arm in r["test"]]
        maps = [r["test"][arm]["map50"] for r in have]
        rare = [statistics.mean(r["test"][arm]["ap50"][c] for r in have) for c in digits.RARE]
        below = "yes" if statistics.mean(gains[arm]) < -floor_mean else "no"
        holm_p = f"{adjusted[arm]:.4f}" if arm in adjusted else "–"
        print(f"| {arm}{' (primary)' if arm == primary else ''} | {len(have)} | {statistics.mean(maps):.4f} | "
              f"{mean_error(gains[arm])} | {sum(g > 0 for g in gains[arm])} of {len(gains[arm])} | {p[arm]:.4f} | "
              f"{holm_p} | {below} | {', '.join(f'{g:+.3f}' for g in gains[arm])} | "
              f"{', '.join(f'{a:.3f}' for a in rare)} |")
    have = [r for r in seeds if "oracle" in r["test"]]
    if have:
        headroom = statistics.mean(r["test"]["oracle"]["map50"] - base[r["seed"]] for r in have)
        floor_here = statistics.mean(abs(r["test"]["random"]["map50"] - r["test"]["random:1"]["map50"]) for r in have)
        print(f"\noracle headroom over the random mean: {headroom:+.4f} = {headroom / max(floor_here, 1e-9):.1f}x "
              "the noise floor (the benchmark can judge when this is >= 3x)")


def merge(results: list[dict]) -> list[dict]:
    """One result per seed from runs of different arms on the same seeds. Training is deterministic, so each
    run trains the same seed model; a run whose seed model's test mAP differs in any digit is left out."""
    by_seed: dict[int, dict] = {}
    for r in results:
        if r["seed"] not in by_seed:
            by_seed[r["seed"]] = {**r, "tier0": dict(r["tier0"]), "test": dict(r["test"])}
            continue
        first = by_seed[r["seed"]]
        if r["seed_map"] != first["seed_map"]:
            print(f"seed {r['seed']}: a run's seed model differs ({r['seed_map']} vs {first['seed_map']}): left out")
            continue
        first["tier0"].update(r["tier0"])
        first["test"].update(r["test"])
    return list(by_seed.values())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=1)
    parser.add_argument("--first-seed", type=int, default=0)
    parser.add_argument("--arms", default=",".join(ARMS))
    parser.add_argument("--tier0-only", action="store_true", help="seed model and each arm's top-B, no fine-tuning")
    parser.add_argument("--finetune", help="fine-tune only these of the arms (default: every arm)")
    parser.add_argument("--gpu", default="", help="gpu_id for the executor (e.g. 0); empty: CPU")
    parser.add_argument("--mode", choices=sorted(MODES), default="cpu")
    parser.add_argument("--deadline", type=float, default=0, help="start no arm after this many seconds (0: none)")
    parser.add_argument("--data", help="an .npz written by --save-data, instead of scikit-learn and the packages' photos")
    parser.add_argument("--json", help="write the results here (after every seed)")
    parser.add_argument("--cache", help="keep seed models in this folder and reuse them (same seed, sizes, recipe)")
    parser.add_argument("--train-seed", type=int, default=0, help="the training seed of the arms (0: as planned)")
    parser.add_argument("--report", nargs="+", metavar="JSON", help="only print the tables from earlier --json files")
    parser.add_argument("--primary", help="the arm named before the run as the primary comparison")
    parser.add_argument("--save-data", metavar="NPZ", help="write the glyphs and photos to this file and stop")
    parser.add_argument("--rounds", type=int, default=1, help="rounds of YMIR's loop per arm (issue 35; 1: the one-round "
                        "benchmark with tier 0)")
    parser.add_argument("--curve", metavar="PNG", help="with --report of --rounds results: the budget curve here")
    parser.add_argument("--default", default="ppal", help="the arm the README's savings figure is about")
    parser.add_argument("--only", help="with --report of --rounds results: only these arms (e.g. random,random:1,diversity)")
    parser.add_argument("--labelled-copies", nargs="+", metavar="FOLDER=LABEL", help="count the near-duplicates in "
                        "the cached rounds of these RoundCache folders that copy a scene labelled before (no training)")
    parser.add_argument("--labelled-copies-name", default="labelled-copies", help="its raw result's name")
    args = parser.parse_args()
    if args.save_data:
        digits.save_source_data(args.save_data)
        return
    global SIZES, BUDGET, SEED_EPOCHS, ARM_EPOCHS, CACHE, ARM_SEED
    CACHE, ARM_SEED = (Path(args.cache) if args.cache else None), args.train_seed
    mode = MODES[args.mode]
    SIZES, BUDGET, SEED_EPOCHS, ARM_EPOCHS = mode["sizes"], mode["budget"], mode["seed_epochs"], mode["arm_epochs"]
    if args.labelled_copies:
        save_result(args.labelled_copies_name, {"budget": BUDGET, "copies": labelled_copies(args.labelled_copies, args.data)})
        return
    if args.report:
        files = [json.loads(Path(path).read_text()) for path in args.report]
        loaded = [r for payload in files for r in payload["results"]]
        if loaded and "rounds" in loaded[0]:
            report_rounds(only_arms(merge_rounds(files), args.only.split(",") if args.only else None), args.default, args.curve)
            return
        results = merge(loaded)
        report(sorted(results, key=lambda r: r["seed"]), args.primary)
        return
    results: list[dict] = []
    started = time.time()
    deadline = started + args.deadline if args.deadline else float("inf")

    def save(result: dict) -> None:
        if args.json:
            done = [r for r in results if r["seed"] != result["seed"]] + [result]
            atomic_json(Path(args.json), {"machine": machine(), "commit": commit(), "argv": sys.argv[1:], "mode": args.mode,
                                          "sizes": SIZES, "budget": BUDGET, "rounds": args.rounds, "results": done})

    for seed in range(args.first_seed, args.first_seed + args.seeds):
        arms = args.arms.split(",")
        if args.rounds > 1:
            results.append(run_rounds(seed, arms, args.rounds, args.gpu, args.data, deadline, save))
            continue
        finetune = [] if args.tier0_only else args.finetune.split(",") if args.finetune else arms
        results.append(run_seed(seed, arms, args.gpu, args.data, finetune, deadline, save))
    print(f"\nmachine: {machine()}; {time.time() - started:.0f} s")
    if args.rounds > 1:
        report_rounds(results, args.default, args.curve)
    else:
        report(results, args.primary)


if __name__ == "__main__":
    main()
