"""result.tsv's order is a function of the images and the settings alone: one ``random`` (per image, from the seed
and its path, with and without infer), and ties broken by candidate index for any batch size and GPU count."""

from __future__ import annotations

import shutil

import pytest
from conftest import TINY_INFER, model_files, run_task
from executor import mine, scan
from executor.protocol import Monitor, Protocol
from test_scan import job_for


@pytest.fixture(scope="module")
def root(sample_root, tmp_path_factory):
    """A copy of the sample's /in (its candidates have several sizes, so passes group by letterboxed shape)."""
    out = tmp_path_factory.mktemp("order")
    shutil.copytree(sample_root / "in", out / "in")
    return out


def candidates(root) -> list[str]:
    return [p for p in (root / "in" / "candidate-index.tsv").read_text().splitlines() if p]


def rows(root) -> list[str]:
    return [line.split("\t")[0] for line in (root / "out" / "result.tsv").read_text().splitlines()]


def test_random_is_one_definition_per_image(trained, root):
    """Mining alone (no model loaded) and mining + infer give one list; dropping a candidate moves no other."""
    config = {**TINY_INFER, "mining_algorithm": "random", "seed": 7, "model_params_path": model_files(trained)}
    assert run_task(root, ["mining"], config)[0] == 0
    alone = (root / "out" / "result.tsv").read_text()
    assert run_task(root, ["mining", "infer"], config)[0] == 0
    assert (root / "out" / "result.tsv").read_text() == alone, "random differs with and without infer"
    paths = candidates(root)
    index = root / "in" / "candidate-index.tsv"
    original = index.read_text()
    try:
        index.write_text("\n".join(paths[1:]) + "\n")
        assert run_task(root, ["mining"], config)[0] == 0
        assert rows(root) == [p for p in alone_rows(alone) if p != paths[0]], "removing one candidate reshuffled others"
    finally:
        index.write_text(original)
    config["seed"] = 8
    assert run_task(root, ["mining"], config)[0] == 0
    assert rows(root) != alone_rows(alone), "another seed, another draw"


def alone_rows(text: str) -> list[str]:
    return [line.split("\t")[0] for line in text.splitlines()]


def test_ties_follow_candidate_order_for_any_batch_size(trained, root):
    """entropy with nothing kept (every score 0: a pure tie) and with real scores, at batch sizes 1 and 8 on
    candidates of several letterboxed shapes: one result.tsv, the tie in candidate order."""
    paths = candidates(root)
    for min_score in (0.999, 0.001):
        written = []
        for batch in (1, 8):
            config = {**TINY_INFER, "img_size": 128, "batch_size_per_gpu": batch, "mining_algorithm": "entropy",
                      "mining_min_score": min_score, "model_params_path": model_files(trained)}
            rc, log = run_task(root, ["mining"], config)
            assert rc == 0, log[-2000:]
            written.append((root / "out" / "result.tsv").read_text())
        assert written[0] == written[1], f"result.tsv depends on the batch size (mining_min_score {min_score})"
        if min_score == 0.999:
            assert alone_rows(written[0]) == paths, "a tie is listed in candidate order"


@pytest.mark.parametrize("algorithm", ["entropy", "ppal", "diversity", "cald"])
def test_ranking_is_the_same_for_any_gpu_count(trained, root, tmp_path, algorithm):
    """One shard and two (as two GPUs), batch 4 and 3: the ranking in candidate order, the same list."""
    paths = candidates(root)
    monitor = Monitor(str(tmp_path / "monitor.txt"), "t")
    seen = []
    for devices, batch in ((1, 4), (2, 3)):
        job = job_for(trained, tmp_path, algorithm)
        job.infer, job.engine.batch_size, job.engine.img_size, job.mining.min_score = None, batch, 128, 0.5
        result = scan.run(job, paths, ["cpu"] * devices, monitor, None, Protocol("1.1.0"))
        ranked = mine.ranking(result)
        assert [p for p, _ in ranked] == paths, "scores come back in candidate order"
        seen.append(ranked)
    for (p1, s1), (p2, s2) in zip(*seen, strict=True):
        assert p1 == p2 and s1 == pytest.approx(s2, rel=1e-4, abs=1e-6)
