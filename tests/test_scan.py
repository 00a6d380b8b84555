"""Sharding the candidate pass over devices: spawned workers, merged in order, same results as one device."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch
from conftest import TINY_INFER, model_files
from contract import check_infer_json
from executor import scan, weights
from executor.engine import EngineSettings, InferSettings
from executor.mining import MiningSettings
from executor.protocol import ErrorCode, Monitor, Protocol, YmirError
from executor.slicing import OFF, SliceSettings


def test_split_is_contiguous_and_complete():
    parts = scan.split(list(range(10)), 3)
    assert parts == [[0, 1, 2, 3], [4, 5, 6], [7, 8, 9]]
    assert scan.split([1], 2) == [[1], []]


def job_for(trained, tmp_path, algorithm):
    chosen = weights.choose(model_files(trained), str(tmp_path), "test")
    engine = EngineSettings(img_size=TINY_INFER["img_size"], batch_size=4, workers=0, half=False, iou=0.45, gpu_decode=False,
                            slices=SliceSettings(0, 0.2, True))
    mining = MiningSettings(algorithm, {"circle": 1.0, "square": 1.0}, 0.001, 100, 0)
    return scan.ScanJob(str(chosen), ["circle", "square"], engine, InferSettings(conf=0.001, max_det=300), mining,
                        str(tmp_path / ".shards"))


@pytest.mark.parametrize("algorithm", ["entropy", "diversity"])
def test_two_workers_match_one(trained, sample_root, tmp_path, algorithm, monkeypatch):
    from executor.mining.diversity import Diversity

    seen = []  # what the parent's finish gets: merged features and uncertainties, in candidate order
    original = Diversity.finish
    monkeypatch.setattr(Diversity, "finish",
                        lambda self, scores: seen.append((torch.cat(self.features), list(scores))) or original(self, scores))
    paths = [p for p in (sample_root / "in" / "candidate-index.tsv").read_text().splitlines() if p]
    paths.append(str(tmp_path / "missing.jpg"))
    job = job_for(trained, tmp_path, algorithm)
    monitor = Monitor(str(tmp_path / "monitor.txt"), "t")
    results = {}
    for n in (1, 2):
        out = tmp_path / f"infer-{n}.json"
        results[n] = (scan.run(job, paths, ["cpu"] * n, monitor, str(out), Protocol("1.1.0")), json.loads(out.read_text()))
        check_infer_json(str(out), paths, ["circle", "square"], legacy=False)
        assert not (tmp_path / ".shards").exists(), "shard files are cleaned up"
    (one, one_json), (two, two_json) = results[1], results[2]
    assert one.readable == two.readable and one.unreadable == two.unreadable == [paths[-1]]
    if algorithm == "diversity":  # greedy picks among near-ties may differ on float noise: compare its inputs
        (features_1, uncertainty_1), (features_2, uncertainty_2) = seen
        assert features_1.shape == features_2.shape == (len(paths) - 1, 128)
        assert (features_1 - features_2).abs().max() < 1e-4
        assert uncertainty_1 == pytest.approx(uncertainty_2, abs=1e-4)
    else:
        assert one.scores == pytest.approx(two.scores, abs=1e-4)
    assert list(one_json["detection"]) == list(two_json["detection"]), "candidate order kept"
    for key, entry in one_json["detection"].items():
        assert len(entry["boxes"]) == len(two_json["detection"][key]["boxes"])


def test_worker_errors_reach_the_parent_with_their_code(trained, sample_root, tmp_path):
    paths = [p for p in (sample_root / "in" / "candidate-index.tsv").read_text().splitlines() if p]
    job = job_for(trained, tmp_path, "entropy")
    job.names = ["circle", "zebra"]
    with pytest.raises(YmirError) as info:
        scan.run(job, paths, ["cpu", "cpu"], Monitor(str(tmp_path / "m.txt"), "t"), None, Protocol("1.1.0"))
    assert info.value.code == ErrorCode.MODEL and "zebra" in info.value.message


def test_each_shard_makes_its_gpu_the_current_device(trained, tmp_path, monkeypatch):
    """A shard on GPU 1 sets GPU 1 as its process's device before loading the model (else its CUDA context and
    pin-memory thread sit on GPU 0). No GPU here: the model loads on the CPU and set_device is recorded."""
    from executor import ultra
    from executor.engine import Engine

    calls = []
    monkeypatch.setattr(torch.cuda, "set_device", calls.append)
    load = ultra.load_detector
    monkeypatch.setattr(ultra, "load_detector", lambda path, device: (calls.append("load"), load(path, torch.device("cpu")))[1])
    engine = Engine(weights.choose(model_files(trained), str(tmp_path), "test"), "1", 64, False, ["circle", "square"])
    assert calls == [torch.device("cuda:1"), "load"] and engine.device == torch.device("cuda:1")


def test_one_nms_serves_mining_and_infer(trained, sample_root, tmp_path, monkeypatch):
    """With mining's NMS run on a pass (lower threshold, same IoU, more boxes), infer's boxes come from it: equal
    to infer's own NMS, box for box, and no second NMS runs. A threshold below mining's runs its own."""
    from executor import ultra
    from executor.engine import Engine

    engine = Engine(weights.choose(model_files(trained), str(tmp_path), "test"), "cpu", 96, False, ["circle", "square"])
    calls = []
    nms = ultra.nms
    monkeypatch.setattr(ultra, "nms", lambda *a, **k: calls.append(1) or nms(*a, **k))
    paths = [p for p in (sample_root / "in" / "candidate-index.tsv").read_text().splitlines() if p]
    found = 0
    for images, metas, _ in engine.batches(paths, 4, 0):
        alone = engine.image_detections(engine.forward(engine.prepare(images), metas), 0.001, 0.45, 50)
        shared = engine.forward(engine.prepare(images), metas)
        engine.model_detections(shared, 0.0005, 0.45, 300)
        before = len(calls)
        derived = engine.image_detections(shared, 0.001, 0.45, 50)
        assert len(calls) == before, "infer ran a second NMS"
        for a, d in zip(alone, derived, strict=True):
            assert a.shape == d.shape and torch.allclose(a, d)
            found += len(a)
        engine.image_detections(shared, 0.0001, 0.45, 50)
        assert len(calls) == before + 1, "below mining's threshold infer needs its own NMS"
    assert found, "the comparison saw boxes"


def test_a_passs_results_are_written_while_the_next_pass_runs(trained, sample_root, tmp_path, monkeypatch):
    """The worker writes pass k's infer lines after it has started pass k+1 (on a GPU the forward is queued, so
    the host's JSON work overlaps the device's), and still writes every candidate once, in order."""
    from executor.engine import Engine

    events = []
    forward, write = Engine.forward, scan.InOrder.write
    monkeypatch.setattr(Engine, "forward", lambda self, images, metas: events.append("forward") or forward(self, images, metas))
    monkeypatch.setattr(scan.InOrder, "write", lambda self, index, line: events.append("write") or write(self, index, line))
    paths = [p for p in (sample_root / "in" / "candidate-index.tsv").read_text().splitlines() if p][:12]
    job = job_for(trained, tmp_path, "entropy")
    out = tmp_path / "infer.json"
    scan.run(job, paths, ["cpu"], Monitor(str(tmp_path / "m.txt"), "t"), str(out), Protocol("1.1.0"))
    check_infer_json(str(out), paths, ["circle", "square"], legacy=False)
    assert events.count("forward") >= 3 and events.count("write") == len(paths)
    assert events.index("write") > events.index("forward", events.index("forward") + 1), events[:8]


def test_sliced_progress_follows_images_not_tiles(trained, sample_root, tmp_path):
    """With slicing every image is several inputs; the progress a shard reports counts images, ending at the
    candidate count (it counted tiles, and so ran to 100 % after the first few images)."""
    paths = [p for p in (sample_root / "in" / "candidate-index.tsv").read_text().splitlines() if p][:6]
    job = job_for(trained, tmp_path, "entropy")
    job.engine = dataclasses.replace(job.engine, slices=SliceSettings(64, 0.25, True))
    (tmp_path / ".shards").mkdir()
    reports = []
    scan.worker(0, job, [paths], ["cpu"], reports.append)
    assert reports == sorted(reports) and reports[-1] == len(paths)


@pytest.mark.parametrize("mode", ["plain", "gpu_decode", "sliced"])
def test_inputs_handed_over_by_pipe_are_those_handed_over_in_shared_memory(trained, tmp_path, mode):
    """With too little /dev/shm the decoding workers hand their inputs over as numpy arrays through their pipes
    (``inputs.shared_memory_handover``): the engine must see exactly the inputs it sees through shared memory,
    JPEG bytes for the device decoder and tiles included."""
    import numpy as np
    from executor.engine import Engine
    from PIL import Image

    rng = np.random.default_rng(5)
    paths = []
    for k, (w, h) in enumerate([(300, 200), (200, 300), (130, 90), (300, 200), (420, 260)]):
        path = tmp_path / f"{k}.{'png' if k == 2 else 'jpg'}"
        Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(path)
        paths.append(str(path))
    (tmp_path / "bad.jpg").write_bytes(b"not an image")
    paths.append(str(tmp_path / "bad.jpg"))
    chosen = weights.choose(model_files(trained), str(tmp_path), "test")
    engine = Engine(chosen, "cpu", 64, False, ["circle", "square"], decode_on_device=mode == "gpu_decode",
                    slices=SliceSettings(100, 0.2, True) if mode == "sliced" else OFF)

    def inputs(by_pipe: bool) -> tuple[dict, list]:
        found, unreadable = {}, []
        for images, metas, bad in engine.batches(paths, 3, 2, by_pipe):
            unreadable += [m.path for m in bad]
            for image, meta in zip(images if images is not None else [], metas, strict=True):
                found[meta.path, meta.part] = (image, dataclasses.astuple(meta))
        return found, unreadable

    (shared, shared_bad), (piped, piped_bad) = inputs(False), inputs(True)
    assert shared_bad == piped_bad == [paths[-1]]
    assert set(shared) == set(piped) and len(shared) >= len(paths) - 1
    for key, (image, meta) in shared.items():
        assert torch.equal(image, piped[key][0]) and meta == piped[key][1], key


def test_the_handover_goes_by_pipe_only_when_shared_memory_is_short(monkeypatch, caplog):
    from executor import inputs, runtime

    monkeypatch.setattr(runtime, "shared_memory_free", lambda: 16 << 30)
    assert not inputs.shared_memory_handover(16, 16, 640) and not caplog.records  # 16 workers: 0.75 GB of 12
    monkeypatch.setattr(runtime, "shared_memory_free", lambda: 64 << 20)  # Docker's default
    assert inputs.shared_memory_handover(1, 16, 640)  # one worker and the main process's queues: 157 MB
    assert "hand their images over by pipe" in caplog.text and "--shm-size" in caplog.text
    assert not inputs.shared_memory_handover(1, 1, 320)  # 1 input of 0.3 MB a batch: 2.4 MB
    monkeypatch.setattr(runtime, "shared_memory_free", lambda: 1 << 30)  # --shm-size 1g for 8 GPUs: 96 MB each
    assert inputs.shared_memory_handover(1, 16, 640) is False and inputs.shared_memory_handover(8, 16, 640, processes=8)


def test_the_worker_hands_the_freed_heap_back_every_so_many_passes(trained, sample_root, tmp_path, monkeypatch):
    """Every ``TRIM_EVERY`` passes (here 2) the worker returns the heap's free pages (``runtime.release_freed_heap``),
    else the heap's holes keep the RSS growing with the pool (docs/benchmarks.md section 3)."""
    from executor.engine import Engine

    events = []
    batches = Engine.batches

    def passes(self, *args):
        for item in batches(self, *args):
            events.append("pass")
            yield item

    monkeypatch.setattr(Engine, "batches", passes)
    monkeypatch.setattr(scan, "release_freed_heap", lambda: events.append("trim"))
    monkeypatch.setattr(scan, "TRIM_EVERY", 2)
    paths = [p for p in (sample_root / "in" / "candidate-index.tsv").read_text().splitlines() if p][:20]
    scan.run(job_for(trained, tmp_path, "ppal"), paths, ["cpu"], Monitor(str(tmp_path / "m.txt"), "t"), None, Protocol("1.1.0"))
    assert events.count("pass") >= 4 and "".join(e[0] for e in events) == ("ppt" * 9)[:len(events)], events
