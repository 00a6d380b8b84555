"""The active-learning benchmark's significance test, pinned on hand-made gains."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))

from active_learning import holm, merge_rounds, parse_arm, scene_copies, sign_flip_p  # noqa: E402


def test_all_gains_positive_is_the_smallest_p():
    assert sign_flip_p([0.01] * 6) == pytest.approx(1 / 64)


def test_mixed_gains_count_the_flips_at_least_as_extreme():
    # observed sum 0.040; flips reaching it: none (0.040), the -0.002 (0.044), the -0.002 and the +0.001 (0.042)
    assert sign_flip_p([0.008, 0.006, -0.002, 0.013, 0.014, 0.001]) == pytest.approx(3 / 64)


def test_a_loss_is_not_significant():
    assert sign_flip_p([-0.01, -0.02, 0.005]) > 0.5
    assert sign_flip_p([0.01, -0.01]) == pytest.approx(0.75)


def test_holm_multiplies_the_smallest_p_by_the_family_size_and_never_decreases():
    adjusted = holm({"a": 0.01, "b": 0.04, "c": 0.03, "d": 0.5})
    assert adjusted == pytest.approx({"a": 0.04, "c": 0.09, "b": 0.09, "d": 0.5})


def test_arm_names_say_algorithm_draw_and_budget():
    assert parse_arm("ppal") == ("ppal", 0, False)
    assert parse_arm("ppal+b") == ("ppal", 0, True)
    assert parse_arm("random:1") == ("random", 1, False)


# ---------------------------------------------------------------- several rounds (issue 35)

def test_each_round_ranks_what_is_left_with_the_model_of_the_round_before(monkeypatch):
    import active_learning as al

    monkeypatch.setattr(al, "BUDGET", 2)
    seen = []

    def rank(arm, left, model, r):
        seen.append((r, model, list(left)))
        return sorted(left, reverse=True)  # any order: the top B are taken

    def fit(labelled, start):
        return f"model-{len(labelled)}-from-{start}"

    pool = [f"p{i}" for i in range(7)]
    done = list(al.arm_rounds("ppal", 3, "seed-model", ["s0", "s1"], pool, rank, fit))
    assert [r for r, *_ in done] == [1, 2, 3]
    assert [model for *_, model in done] == ["model-4-from-seed-model", "model-6-from-model-4-from-seed-model",
                                             "model-8-from-model-6-from-model-4-from-seed-model"]
    assert [m for _, m, _ in seen] == ["seed-model", done[0][3], done[1][3]]  # each round mines with the last model
    assert [len(left) for *_, left in seen] == [7, 5, 3]  # the pool shrinks by B: nothing is picked twice
    picked = [p for _, ps, _, _ in done for p in ps]
    assert len(set(picked)) == 6 and done[-1][2] == ["s0", "s1", *picked]
    assert list(al.arm_rounds("ppal", 3, "m", [], pool, rank, fit, deadline=0)) == []  # past the deadline: no round


def test_a_stopped_run_resumes_from_its_cached_rounds_with_the_same_picks(monkeypatch, tmp_path):
    """``RoundCache``: rounds a run finished are read back (picks, model, record), the rest run, and the result is
    the one an unbroken run gives; another executor code, sizes or seed is another cache."""
    import active_learning as al

    monkeypatch.setattr(al, "BUDGET", 2)
    monkeypatch.setattr(al, "CACHE", tmp_path / "cache")
    root = tmp_path / "run-1"
    pool = [f"{root}/in/p{i}.jpg\t{root}/in/p{i}.txt" for i in range(7)]
    ranked = []

    def rank(arm, left, model, r):
        ranked.append(r)
        return sorted(left, reverse=True)

    def fit(labelled, start):
        path = tmp_path / f"model-{len(labelled)}.pt"
        path.write_text(f"{len(labelled)} from {Path(start).name}")
        return path

    whole = list(al.arm_rounds("ppal", 3, tmp_path / "seed.pt", [], pool, rank, fit))
    cache = al.RoundCache(7, root)
    for r, picked, _, model in whole[:2]:  # a run stopped after round 2
        cache.put("ppal", r, picked, model, {"round": r})
    # the next session: another temporary root, the same data under it
    root2 = tmp_path / "run-2"
    pool2 = [line.replace(str(root), str(root2)) for line in pool]
    cache2 = al.RoundCache(7, root2)
    ranked.clear()
    resumed = list(al.arm_rounds("ppal", 3, tmp_path / "seed.pt", [], pool2, rank, fit,
                                 done=lambda r: cache2.get("ppal", r)[:2] if cache2.get("ppal", r) else None))
    assert ranked == [3], "only the round the stopped run had not finished runs again"
    assert [p for _, p, _, _ in resumed] == [[x.replace(str(root), str(root2)) for x in p] for _, p, _, _ in whole]
    assert cache2.get("ppal", 2)[2] == {"round": 2} and cache2.get("ppal", 2)[1].read_text() == "4 from model-2.pt"
    assert al.RoundCache(8, root2).get("ppal", 1) is None  # another seed
    monkeypatch.setattr(al, "code_version", lambda: "changed")
    assert al.RoundCache(7, root2).get("ppal", 1) is None  # another executor code


def test_label_savings_read_the_labels_an_arm_needs_to_reach_randoms_final_map():
    from active_learning import label_savings, labels_to_reach

    counts = [50, 150, 250, 350, 450]
    rand = [0.30, 0.40, 0.45, 0.50, 0.55]
    assert label_savings(counts, [0.30, 0.50, 0.55, 0.60, 0.62], rand) == pytest.approx(0.5)  # 200 of 400 mined
    assert labels_to_reach(counts, [0.30, 0.45, 0.65, 0.7, 0.7], 0.55) == pytest.approx(200)  # between rounds
    assert label_savings(counts, [0.30, 0.45, 0.65, 0.7, 0.7], rand) == pytest.approx(0.625)
    assert label_savings(counts, rand, rand) == pytest.approx(0.0)  # random itself saves nothing
    assert label_savings(counts, [0.30, 0.35, 0.40, 0.45, 0.50], rand) is None  # never reaches it


def fake_results(gains: dict[str, list[float]], seeds: int = 4) -> list[dict]:
    """Results of ``run_rounds``' shape: random at 0.30 + 0.05 per round (random:1 0.01 above), each arm that
    plus its gain per round."""
    out = []
    for seed in range(seeds):
        base = [0.30 + 0.05 * r + 0.001 * seed for r in range(1, 5)]
        rounds = {"random": [{"labelled": 50 + 100 * r, "map50": m} for r, m in enumerate(base, 1)],
                  "random:1": [{"labelled": 50 + 100 * r, "map50": m + 0.01} for r, m in enumerate(base, 1)]}
        for arm, g in gains.items():
            rounds[arm] = [{"labelled": 50 + 100 * r, "map50": m + 0.005 + g[r - 1]} for r, m in enumerate(base, 1)]
        out.append({"seed": seed, "seed_map": 0.30, "labelled": 50, "rounds": rounds})
    return out


def test_the_rounds_report_names_an_arm_below_random_and_draws_the_curve(tmp_path):
    from active_learning import report_rounds

    png = tmp_path / "curve.png"
    summary = report_rounds(fake_results({"ppal": [0.1, 0.1, 0.1, 0.1], "fading": [0.05, 0.0, -0.03, -0.05]}),
                            png=str(png))
    assert summary["counts"] == [50, 150, 250, 350, 450] and summary["floors"] == pytest.approx([0.01] * 4)
    assert summary["arms"]["ppal"]["below_random_in_rounds"] == []
    assert summary["arms"]["fading"]["below_random_in_rounds"] == [3, 4]  # more than the floor below in rounds 3, 4
    saved = summary["arms"]["ppal"]["label_savings"]  # +0.1 is two rounds ahead: random's final mAP at about 250
    assert saved == pytest.approx(0.5, abs=0.02)
    low, high = summary["arms"]["ppal"]["savings_interval_90"]
    assert low <= saved <= high and high - low < 0.02  # seeds that agree: a narrow interval
    assert png.stat().st_size > 10_000


def test_rounds_of_one_seed_from_two_files_stand_side_by_side_and_a_different_seed_model_stops_it():
    def result(seed_map, arms):
        return {"seed": 500, "seed_map": seed_map, "rounds": {arm: [{"map50": m}] for arm, m in arms.items()}}

    old = {"commit": "aaa", "results": [result(0.3, {"random": 0.5, "ppal": 0.6})]}
    new = {"commit": "bbb", "results": [result(0.3, {"ppal": 0.7, "diversity": 0.65})]}
    merged = merge_rounds([old, new])
    assert len(merged) == 1 and merged[0]["rounds"] == {"random": [{"map50": 0.5}], "ppal": [{"map50": 0.6}],
                                                        "ppal@bbb": [{"map50": 0.7}], "diversity": [{"map50": 0.65}]}
    with pytest.raises(SystemExit, match="seed models differ"):
        merge_rounds([old, {"commit": "ccc", "results": [result(0.31, {"ppal": 0.7})]}])


def test_only_keeps_the_named_arms_and_stops_when_a_seed_lacks_one():
    """``--report --only``: seeds that ran different arms (502-507 with the oracle, 508-509 without) reported over
    the arms they share."""
    from active_learning import only_arms

    results = [{"seed": 502, "rounds": {"random": [1], "oracle": [2], "diversity": [3]}},
               {"seed": 508, "rounds": {"random": [4], "diversity": [5], "cald": [6]}}]
    assert only_arms(results, None) is results
    assert [r["rounds"] for r in only_arms(results, ["random", "diversity"])] == [{"random": [1], "diversity": [3]},
                                                                                 {"random": [4], "diversity": [5]}]
    with pytest.raises(SystemExit, match="cald, oracle"):
        only_arms(results, ["random", "oracle", "cald"])


def test_scene_copies_tell_copies_of_labelled_scenes_from_copies_within_a_round():
    counted = scene_copies([[1, 2, 2], [2, 3, 3, 3], [1, 4]])
    assert counted == [{"near_duplicates": 3, "of_labelled_scenes": 0, "within_round": 1},
                       {"near_duplicates": 4, "of_labelled_scenes": 1, "within_round": 2},
                       {"near_duplicates": 2, "of_labelled_scenes": 1, "within_round": 0}]


def test_the_rounds_report_gives_each_seeds_savings_and_the_picks_per_round():
    """Issue 43 asks for per-seed savings and each round's near-duplicates and empty frames, per arm."""
    from active_learning import report_rounds

    results = fake_results({"ppal": [0.1, 0.1, 0.1, 0.1], "late": [0.0, 0.0, 0.0, -0.5]}, seeds=2)
    for seed, result in enumerate(results):
        for arm, history in result["rounds"].items():
            for r, record in enumerate(history):
                record["picks"] = {"duplicates": 10 * r + seed, "empty": 0 if arm == "ppal" else 5, "digits": 0, "rare": 0}
    summary = report_rounds(results)
    assert summary["arms"]["ppal"]["per_seed_savings"] == [pytest.approx(0.5, abs=0.02)] * 2
    assert summary["arms"]["late"]["per_seed_savings"] == [None, None]  # never reaches random's final mAP
    assert summary["picks"]["ppal"] == {"duplicates": [[0, 1], [10, 11], [20, 21], [30, 31]], "empty": [[0, 0]] * 4}
    assert summary["picks"]["random:1"]["empty"] == [[5, 5]] * 4  # each random draw apart
    del results[0]["rounds"]["late"][2]["picks"]  # an older result without picks: the arm is left out
    assert "late" not in report_rounds(results)["picks"]
