"""One pass over the candidates, shared by infer and mining, sharded over GPUs.

Also what a pass needs from the config: which candidates, which devices, which weights and settings.

Each device gets a contiguous shard of the candidate list and a worker (run in this
process when there is a single device, in spawned processes otherwise). A worker
writes its infer results as JSON lines and its mining scores to ``/out/.shards``;
the parent merges them in candidate order into infer-result.json (streaming, so
memory stays flat) and result.tsv. One code path serves one device and many.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import shutil
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import torch
from easydict import EasyDict

from executor import slicing, weights
from executor.engine import Engine, EngineSettings, InferSettings, OnHost
from executor.inputs import Meta, shared_memory_handover, why_unreadable
from executor.mining import MinerContext, MiningSettings, algorithms
from executor.mining.base import per_image_scores, to_list
from executor.protocol import (
    ErrorCode,
    InferResultWriter,
    Monitor,
    Protocol,
    YmirError,
    class_names,
    classify_exception,
    dataset_error,
    gpu_ids,
    path_list,
    read_index,
)
from executor.runtime import decode_workers, release_freed_heap, select_device

LOG = logging.getLogger("executor")
TRIM_EVERY = 64  # passes between two returns of the C heap's free pages (``runtime.release_freed_heap``)
NOT_FINITE = "images with a NaN/Inf score or features, ranked last (with half: true, an fp16 overflow; try half: false)"


@dataclass
class ScanJob:
    """Everything a worker needs (picklable: workers may be spawned)."""

    weights: str
    names: list[str]
    engine: EngineSettings
    infer: InferSettings | None
    mining: MiningSettings | None
    shard_dir: str
    by_pipe: bool = False  # decoded inputs handed over without shared memory (``inputs.shared_memory_handover``)


@dataclass
class ScanResult:
    readable: list[str]  # in candidate order
    scores: list[float | None]  # None: a score or features that were not finite (ranked last)
    unreadable: list[str]  # in candidate order
    problems: Counter
    boxes: int


def _miner(job: ScanJob, engine: Engine | None):
    assert job.mining is not None
    m = job.mining
    model_classes = engine.class_map if engine is not None else job.names
    weights = torch.tensor([m.class_weights.get(n, 0.0) if n else 0.0 for n in model_classes])
    context = MinerContext(engine, weights, m.min_score, job.engine.iou, m.budget, m.seed)  # weights -> device
    return algorithms()[m.algorithm](context)


class _Counter:
    """Progress from a spawned worker: images done, in shared memory the parent polls."""

    def __init__(self, array: Any, rank: int) -> None:
        self.array, self.rank = array, rank

    def __call__(self, done: int) -> None:
        self.array[self.rank] = done


class ImagesDone:
    """Candidates done, from the inputs that went through: each input is its share of its image (with slicing,
    one of its tiles, which may come in several passes), so the bar follows images, not tiles, and needs no
    tracker of its own beside the merge's (``slicing.ImageBoxes``)."""

    def __init__(self) -> None:
        self.done = Fraction(0)

    def add(self, metas: list[Meta], bad: list[Meta]) -> int:
        self.done += len(bad) + sum((Fraction(1, meta.parts) for meta in metas), Fraction(0))
        return math.floor(self.done)


class InOrder:
    """Writes a shard's infer lines in candidate order, though passes finish shape by shape: each line waits
    for those before it (as many as the engine's per-shape queues hold)."""

    def __init__(self, fp: Any) -> None:
        self.fp, self.waiting, self.next = fp, {}, 0

    def write(self, index: int, line: str) -> None:
        self.waiting[index] = line
        while self.next in self.waiting:
            self.fp.write(self.waiting.pop(self.next))
            self.next += 1


def worker(rank: int, job: ScanJob, shards: list[list[str]], devices: list[str], report: Callable[[int], None]) -> None:
    """Scan one shard on one device; writes ``infer-<rank>.jsonl`` and ``scan-<rank>.pt``."""
    shard_dir = Path(job.shard_dir)
    try:
        paths = shards[rank]
        engine = Engine(Path(job.weights), devices[rank], job.engine.img_size, job.engine.half, job.names,
                        decode_on_device=job.engine.gpu_decode and devices[rank] != "cpu", slices=job.engine.slices)
        miner = _miner(job, engine) if job.mining else None
        readable: list[str] = []  # per model input (several per image with slicing), in pass order
        scores: list[torch.Tensor] = []  # per pass, on the device until the shard ends
        indices: list[int] = []  # each input's candidate index, in pass order
        parts: list[int] = []  # each input's place among its image's inputs (slicing; 0 without)
        sliced = slicing.ImageBoxes(job.infer.max_det if job.infer else 0, job.engine.iou, engine.slices, job.engine.img_size)
        unreadable: list[str] = []
        problems: Counter = Counter()
        boxes = 0
        progress = ImagesDone()
        infer_file = open(shard_dir / f"infer-{rank}.jsonl", "w", encoding="utf-8") if job.infer else None
        in_order = InOrder(infer_file)
        waiting: tuple[OnHost, list[Meta]] | None = None  # the last pass's boxes, written once the next pass runs

        def write(pass_boxes: OnHost, metas: list[Meta]) -> int:
            found_in_pass = 0
            for det, meta in zip(pass_boxes.get(), metas, strict=True):
                det = sliced.add(det, meta)  # a tile: the image is written once all its inputs are in, merged
                if det is None:
                    continue
                found = engine.boxes(det)
                found_in_pass += len(found)
                in_order.write(meta.index, json.dumps([meta.path, found, meta.width, meta.height]) + "\n")
            return found_in_pass

        try:
            for passes, (images, metas, bad) in enumerate(engine.batches(paths, job.engine.batch_size, job.engine.workers,
                                                                         job.by_pipe), start=1):
                if images is not None:
                    batch = engine.forward(engine.prepare(images), metas)  # queued on a GPU: the host goes on
                    if waiting is not None:  # the previous pass's results, written while this one computes
                        boxes += write(*waiting)
                        waiting = None
                    if miner is not None:
                        scores.append(miner.device_scores(batch))
                        readable += [m.path for m in metas]
                        indices += [m.index for m in metas]
                        parts += [m.part for m in metas]
                    if infer_file is not None:
                        waiting = (engine.detections_to_host(batch, job.infer.conf, job.engine.iou,
                                                             job.infer.max_det), metas)
                for meta in bad:
                    unreadable.append(meta.path)
                    problems[meta.problem] += 1
                    if infer_file is not None:
                        in_order.write(meta.index, json.dumps([meta.path, [], 0, 0]) + "\n")
                report(progress.add(metas, bad))
                if passes % TRIM_EVERY == 0:  # else the heap's holes stay resident and the RSS grows with the pool
                    release_freed_heap()
            if waiting is not None:
                boxes += write(*waiting)
        finally:
            if infer_file is not None:
                infer_file.close()
        if in_order.waiting or sliced.parts.waiting:  # every candidate is a readable pass member or unreadable: none may wait
            raise RuntimeError(f"infer lines of candidates {sorted(in_order.waiting or sliced.parts.waiting)[:5]} were never written")
        # Back to candidate order (passes are grouped by letterboxed shape): what finish sees, and so every
        # tie in result.tsv, is then the same for any batch size and GPU count. A sliced image's inputs are
        # then one after another (in part order), and combine into the image's one score and state.
        order = torch.tensor(sorted(range(len(indices)), key=lambda r: (indices[r], parts[r])), dtype=torch.long)
        _, counts = torch.tensor(indices, dtype=torch.long)[order].unique_consecutive(return_counts=True)
        first = (counts.cumsum(0) - counts).tolist()  # each image's first input, in ``order``
        listed = []
        if miner is not None and scores:
            rows = torch.cat(scores)[order.to(scores[0].device)]
            listed = to_list(per_image_scores(rows, counts.to(rows.device), miner.tile_reduce))
        problems[NOT_FINITE] += sum(s is None for s in listed)
        readable = [readable[int(order[i])] for i in first]
        state = miner.group_state(miner.state(order), counts) if miner is not None else None
        torch.save({"readable": readable, "scores": listed, "unreadable": unreadable, "problems": dict(problems),
                    "boxes": boxes, "state": state}, shard_dir / f"scan-{rank}.pt")
    except BaseException as exc:
        code, message = classify_exception(exc)
        (shard_dir / f"error-{rank}.json").write_text(json.dumps({"code": int(code), "message": message}))
        raise


def _spawn(job: ScanJob, shards: list[list[str]], devices: list[str], total: int, monitor: Monitor) -> None:
    import torch.multiprocessing as mp

    array = mp.get_context("spawn").Array("q", len(devices), lock=False)
    context = mp.start_processes(_spawned, args=(job, shards, devices, array), nprocs=len(devices), join=False,
                                 start_method="spawn")
    try:
        while not context.join(timeout=1.0):
            monitor.progress(sum(array) / total)
    except Exception as exc:
        for error in sorted(Path(job.shard_dir).glob("error-*.json")):
            found = json.loads(error.read_text())
            raise YmirError(ErrorCode(found["code"]), found["message"]) from exc
        raise


def _spawned(rank: int, job: ScanJob, shards: list[list[str]], devices: list[str], array: Any) -> None:
    from executor import runtime

    runtime.setup_logging()
    runtime.allow_large_images()  # a spawned process starts from PIL's defaults
    worker(rank, job, shards, devices, _Counter(array, rank))


def split(paths: list[str], parts: int) -> list[list[str]]:
    """Contiguous shards, so merging them in rank order keeps the candidate order."""
    size, extra = divmod(len(paths), parts)
    out, start = [], 0
    for i in range(parts):
        end = start + size + (1 if i < extra else 0)
        out.append(paths[start:end])
        start = end
    return out


def run(job: ScanJob, paths: list[str], devices: list[str], monitor: Monitor, infer_file: str | None,
        protocol: Protocol) -> ScanResult:
    """Scan ``paths`` over ``devices``; writes infer-result.json when the job infers; returns mining scores."""
    devices = [d for d in devices if d] or ["cpu"]
    devices = devices[: max(1, len(paths))]
    shard_dir = Path(job.shard_dir)
    shutil.rmtree(shard_dir, ignore_errors=True)
    shard_dir.mkdir(parents=True)
    shards = split(paths, len(devices))
    settings = job.engine
    if settings.gpu_decode and settings.slices.on:
        LOG.info("gpu_decode is ignored with slicing (slice_size %d): each image is decoded once on the CPU, in the "
                 "decoding workers, which cut its tiles from it", settings.slices.size)
    workers = decode_workers(settings.workers, len(devices))
    by_pipe = shared_memory_handover(workers, settings.batch_size, settings.img_size, processes=len(devices))
    job = dataclasses.replace(job, engine=dataclasses.replace(settings, workers=workers), by_pipe=by_pipe)
    try:
        if len(devices) == 1:
            worker(0, job, shards, devices, lambda done: monitor.progress(done / len(paths)))
        else:
            LOG.info("scanning %d candidates on %d devices (%s)", len(paths), len(devices), ", ".join(devices))
            _spawn(job, shards, devices, len(paths), monitor)
        parts = [torch.load(shard_dir / f"scan-{r}.pt", weights_only=False) for r in range(len(devices))]
        result = ScanResult(
            readable=[p for part in parts for p in part["readable"]],
            scores=[s for part in parts for s in part["scores"]],
            unreadable=[p for part in parts for p in part["unreadable"]],
            problems=+sum((Counter(part["problems"]) for part in parts), Counter()),  # + drops zero counts
            boxes=sum(part["boxes"] for part in parts),
        )
        require_a_readable_image(len(paths), len(result.unreadable), result.problems)
        if job.mining is not None:
            miner = _miner(job, None)
            miner.merge_states([part["state"] for part in parts])
            result.scores = miner.finish(result.scores)
        if infer_file is not None:
            _merge_infer(shard_dir, len(devices), infer_file, protocol, job.names, result)
        return result
    finally:
        shutil.rmtree(shard_dir, ignore_errors=True)


def _merge_infer(shard_dir: Path, parts: int, path: str, protocol: Protocol, names: list[str], result: ScanResult) -> None:
    writer = InferResultWriter(path, protocol, names)
    try:
        for rank in range(parts):
            with open(shard_dir / f"infer-{rank}.jsonl", encoding="utf-8") as fp:
                for line in fp:
                    image, found, width, height = json.loads(line)
                    writer.add(image, found, width, height)
    except BaseException:
        writer.abort()
        raise
    writer.close()
    if writer.duplicates:
        result.problems["duplicate basenames (first kept)"] += writer.duplicates


def candidates(cfg: EasyDict) -> list[str]:
    paths = [fields[0] for _, fields in read_index(cfg.ymir.input.candidate_index_file, 1)]
    if not paths:
        raise dataset_error(f"the candidate index {cfg.ymir.input.candidate_index_file} lists no image")
    return paths


def devices(cfg: EasyDict) -> list[str]:
    device, _ = select_device(gpu_ids(cfg.param))
    return device.split(",")


def job(cfg: EasyDict, engine: EngineSettings, infer: InferSettings | None, mining: MiningSettings | None,
        purpose: str) -> ScanJob:
    """What every scan worker needs: the chosen weights, classes and settings."""
    chosen = weights.choose(path_list(cfg.param.get("model_params_path")), cfg.ymir.input.models_dir, purpose)
    shard_dir = str(Path(cfg.ymir.output.root_dir).absolute() / ".shards")
    return ScanJob(str(chosen), class_names(cfg.param), engine, infer, mining, shard_dir)


def decode_problems(paths: list[str], workers: int) -> list[str]:
    """Per candidate, why the scan's decoder cannot read it ('' when it can), decoded in DataLoader workers
    with no model: mining with ``random`` ranks last exactly the images every other algorithm ranks last."""
    loader = torch.utils.data.DataLoader(paths, batch_size=64, shuffle=False, collate_fn=why_unreadable,
                                         num_workers=decode_workers(workers, 1))
    return [problem for batch in loader for problem in batch]


def require_a_readable_image(total: int, unreadable: int, problems: Counter) -> None:
    """Every candidate unreadable is a dataset in a format this image cannot decode, not a result: 300003."""
    if total and unreadable == total:
        details = ", ".join(f"{k}: {v}" for k, v in sorted(problems.items())) or f"unreadable images: {total}"
        raise YmirError(ErrorCode.IMAGE, f"none of the {total} candidate images could be read ({details}); check that "
                        "the candidates are image files OpenCV or PIL can decode (JPEG, PNG, BMP, TIFF, WEBP)")
