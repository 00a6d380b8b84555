"""Each mining algorithm's scoring pinned on small hand-made inputs."""

from __future__ import annotations

import math

import pytest
import torch
from executor.mining import binary_entropy, cald, ppal
from executor.mining.aldd import aldd_scores
from executor.mining.cald import _flip, _rotate, _scale, augmentation_value, box_consistency
from executor.mining.diversity import greedy_scores, uncertainty_mass
from executor.mining.entropy import box_uncertainty, image_entropy

ONES = torch.ones(2)


def det(*rows):
    return torch.tensor(rows, dtype=torch.float32).reshape(-1, 6)


def test_binary_entropy_shape():
    values = binary_entropy(torch.tensor([0.0, 0.5, 1.0, 0.9]))
    assert values[1] == 1.0 and values[0] < 1e-4 and values[2] < 1e-4 and 0.4 < values[3] < 0.5


def test_entropy_confident_image_scores_below_uncertain_one():
    confident = det([0, 0, 10, 10, 0.98, 0], [20, 20, 30, 30, 0.97, 1])
    uncertain = det([0, 0, 10, 10, 0.98, 0], [20, 20, 30, 30, 0.55, 1])
    empty = det()
    scores = image_entropy([confident, uncertain, empty], ONES)
    assert scores[1] > scores[0] > scores[2] == 0.0


def test_entropy_is_not_a_box_count():
    one_unsure = det([0, 0, 10, 10, 0.5, 0])
    many_sure = det(*[[i, i, i + 5, i + 5, 0.95, 0] for i in range(20)])
    assert image_entropy([one_unsure], ONES)[0] > image_entropy([many_sure], ONES)[0]


def test_class_weights_silence_a_class():
    unsure_cat = det([0, 0, 10, 10, 0.5, 1])
    assert image_entropy([unsure_cat], torch.tensor([1.0, 0.0]))[0] == 0.0


def test_aldd_flat_confident_map_scores_below_disagreeing_map():
    torch.manual_seed(0)
    flat = torch.full((1, 2, 8, 8), 0.02)
    noisy = torch.rand(1, 2, 8, 8)
    scores = aldd_scores([flat, flat[..., :4, :4]], ONES).tolist() + aldd_scores([noisy, noisy[..., :4, :4]], ONES).tolist()
    assert scores[0] < 1e-6 < scores[1]


def test_aldd_class_weights():
    torch.manual_seed(0)
    maps = torch.full((1, 2, 8, 8), 0.02)
    maps[:, 1] = torch.rand(8, 8)
    assert aldd_scores([maps], torch.tensor([1.0, 0.0])) < aldd_scores([maps], torch.tensor([0.0, 1.0]))


def cdet(*rows):
    """Detections with class columns: x1 y1 x2 y2 score class, then each class's score (2 classes)."""
    return torch.tensor(rows, dtype=torch.float32).reshape(-1, 8)


def test_cald_box_consistency_is_iou_plus_class_agreement_times_score():
    ref = cdet([10, 10, 30, 30, 0.9, 0, 0.9, 0.05])
    assert box_consistency(ref, ref, ref).tolist() == pytest.approx([1.9])  # IoU 1 + JS 0 x mean score 0.9
    moved = cdet([20, 20, 40, 40, 0.9, 0, 0.9, 0.05])
    assert float(box_consistency(ref, ref, moved)[0]) == pytest.approx(1 / 7 + 0.9, abs=1e-5)
    confused = cdet([10, 10, 30, 30, 0.9, 1, 0.05, 0.9])  # same place, the other class
    assert 1.0 < float(box_consistency(ref, ref, confused)[0]) < 1.9 - 0.3
    assert box_consistency(ref, ref, cdet()).tolist() == [0.0]


def test_cald_value_is_the_least_distance_to_beta_and_zero_when_the_copy_keeps_nothing():
    refs = cdet([10, 10, 30, 30, 0.9, 0, 0.9, 0.05], [40, 40, 60, 60, 0.3, 1, 0.05, 0.3])
    aug = refs.clone()  # m = 1.9 and 1.3: the second box sits at beta
    wanted = torch.tensor([True, True])
    assert float(augmentation_value(refs, refs, aug, wanted)) == pytest.approx(0.0, abs=1e-5)
    assert float(augmentation_value(refs, refs, aug, torch.tensor([True, False]))) == pytest.approx(0.6, abs=1e-5)
    assert float(augmentation_value(refs, refs, cdet(), wanted)) == 0.0
    assert augmentation_value(refs, refs, aug, torch.tensor([False, False])).isnan()


def test_cald_stage_two_puts_the_classes_the_model_was_not_trained_on_first():
    scores = [1.0, 0.9, 0.8, 0.2, cald.NO_DETECTION, None]
    profiles = torch.tensor([[0.9, 0.0], [0.0, 0.9], [0.5, 0.5], [0.0, 0.9], [0.0, 0.0], [0.0, 0.0]])
    trained_on = torch.tensor([0.95, 0.05])  # class 1 is rare in the training set
    out = cald.stage_two(scores, profiles, trained_on, budget=2)  # looks at ceil(1.2 x 2) = 3 images
    order = sorted((i for i, s in enumerate(out) if s is not None), key=lambda i: -out[i])
    assert order == [1, 2, 0, 3, 4] and out[5] is None


def test_cald_js_divergence():
    p = torch.tensor([[1.0, 0.0], [0.5, 0.5]])
    assert cald.js_divergence(p, p).tolist() == pytest.approx([0.0, 0.0], abs=1e-6)
    assert float(cald.js_divergence(p[:1], torch.tensor([[0.0, 1.0]]))[0]) == pytest.approx(math.log(2), abs=1e-5)


@pytest.mark.parametrize("height, width", [(64, 64), (64, 96), (96, 64)])
def test_cald_box_mappings_follow_the_image(height, width):
    """A bright rectangle moved by each augmentation lands where its mapped box says (square and not)."""
    images = torch.zeros(1, 3, height, width)
    images[..., 10:26, 8:20] = 1.0
    box = torch.tensor([[8.0, 10.0, 20.0, 26.0]])
    for augment in (_flip, _scale, _rotate):
        out, mapped = augment(images, box)
        ys, xs = torch.nonzero(out[0, 0] > 0.5, as_tuple=True)
        found = torch.tensor([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], dtype=torch.float32)
        assert (found - mapped[0]).abs().max() < 3.0, (augment, found, mapped)


def test_diversity_spreads_near_duplicates():
    a, b, c = torch.eye(3)
    features = torch.stack([a, a * 0.999 + b * 0.001, a, b, c])
    features = torch.nn.functional.normalize(features, dim=1)
    uncertainty = torch.tensor([0.9, 0.9, 0.9, 0.5, 0.4])
    order = greedy_scores(features, uncertainty, budget=5).argsort(descending=True).tolist()
    assert order[0] in (0, 1, 2) and set(order[1:3]) == {3, 4}, order


def test_diversity_scores_never_grow_along_the_pick_order():
    """The greedy product never grows from one pick to the next, so sorting by score replays the pick order;
    the images left over score at most the last pick."""
    torch.manual_seed(1)
    features = torch.nn.functional.normalize(torch.randn(50, 8), dim=1)
    uncertainty = torch.rand(50)
    scores = greedy_scores(features, uncertainty, budget=20)
    assert torch.isfinite(scores).all() and len(set(scores.tolist())) > 40
    # Replay the greedy picks by hand: each pick maximises (floor + u) x distance to the picks before it.
    order = scores.argsort(descending=True).tolist()
    weight = 0.1 + uncertainty
    for step in range(20):
        taken = features[order[:step]]
        distance = torch.cdist(features, taken).min(1).values if step else torch.full((50,), 2.0)
        value = weight * distance
        value[order[:step]] = -1
        assert order[step] == int(value.argmax()) and scores[order[step]] == pytest.approx(float(value.max()), abs=1e-5)
    picked = scores[order[:20]]
    assert (picked[1:] <= picked[:-1] + 1e-6).all() and scores[order[20:]].max() <= picked[-1] + 1e-6


def test_diversity_uncertainty_adds_up_the_unsure_boxes():
    one_unsure = det([0, 0, 10, 10, 0.5, 0])
    two_unsure = det([0, 0, 10, 10, 0.5, 0], [20, 20, 30, 30, 0.5, 1])
    sure = det(*[[i, i, i + 5, i + 5, 0.999, 0] for i in range(20)])
    mass = uncertainty_mass([one_unsure, two_unsure, sure, det()], ONES)
    assert mass[1] == pytest.approx(2 * mass[0]) and mass[0] == pytest.approx(1.0)
    assert mass[2] < 0.5 * mass[0] and mass[3] == 0.0
    assert uncertainty_mass([two_unsure], torch.tensor([1.0, 0.0]))[0] == pytest.approx(1.0)


def test_entropy_sees_class_confusion_that_the_top_score_hides():
    """Two boxes with the same top score 0.9: one sure of its class, one torn between two."""
    sure = cdet([0, 0, 10, 10, 0.9, 0, 0.9, 0.01])
    torn = cdet([0, 0, 10, 10, 0.9, 0, 0.9, 0.85])
    assert image_entropy([torn], ONES)[0] > image_entropy([sure], ONES)[0] + 0.2
    # binary entropy of the top score alone gave both the same value
    assert binary_entropy(sure[:, 4]) == binary_entropy(torn[:, 4])


def test_entropy_with_one_class_is_the_binary_entropy_of_the_score():
    one = torch.tensor([[0, 0, 10, 10, 0.7, 0, 0.7]])
    assert float(box_uncertainty(one, torch.ones(1))[0]) == pytest.approx(float(binary_entropy(torch.tensor(0.7))), abs=1e-5)


def test_entropy_is_in_zero_one_and_class_weighted_by_shares():
    rows = cdet([0, 0, 10, 10, 0.5, 0, 0.5, 0.5], [0, 0, 10, 10, 0.99, 1, 0.001, 0.99])
    values = box_uncertainty(rows, ONES)
    assert 0 <= float(values.min()) and float(values.max()) <= 1
    assert float(box_uncertainty(rows[:1], torch.tensor([1.0, 0.0]))[0]) == pytest.approx(float(values[0]) / 2, abs=1e-5)


def test_ppal_similarity_matches_boxes_of_the_same_class_only():
    f = torch.nn.functional.normalize(torch.tensor([[1.0, 0.0], [1.0, 0.0], [1.0, 0.0], [0.0, 1.0]]), dim=1)
    classes = torch.tensor([0, 0, 1, 0])  # image 0: box 0; image 1: box 1 (same look, same class);
    owner = torch.tensor([0, 1, 2, 3])  # image 2: same look, other class; image 3: same class, other look
    sim = ppal.similarity_to(0, f, classes, owner, 5)  # image 4 has no box
    assert sim.tolist() == pytest.approx([1.0, 1.0, 0.0, 0.0, 0.0])


def test_ppal_picks_spread_over_near_duplicates_among_the_uncertain():
    """Three near-copies of the most uncertain scene and two other scenes: with a budget of 3 the picks are
    one copy and the two others, then the remaining copies, then the sure images."""
    rows = [[1.0, 0.0, 0.0]] * 3 + [[0.0, 1.0, 0.0], [0.0, 0.0, 1.0]] + [[1.0, 1.0, 1.0]] * 3
    f = torch.nn.functional.normalize(torch.tensor(rows), dim=1)
    classes = torch.zeros(8, dtype=torch.long)
    owner = torch.arange(8)
    uncertainty = torch.tensor([0.9, 0.89, 0.88, 0.7, 0.6, 0.1, 0.05, 0.01])
    scores = ppal.select(uncertainty, f, classes, owner, budget=3)
    order = scores.argsort(descending=True).tolist()
    assert order[0] == 0 and set(order[1:3]) == {3, 4} and order[3:5] == [1, 2] and order[5:] == [5, 6, 7]


def test_ppal_takes_typical_images_first_among_the_uncertain():
    """Typical first (issue 43, item 2): four images alike and one like none of them, the outlier a little more
    uncertain; the first pick is one of the four (by uncertainty alone it would be the outlier)."""
    rows = [[1.0, 0.0, 0.0], [0.9, 0.1, 0.0], [0.95, 0.05, 0.0], [0.92, 0.0, 0.08], [0.0, 0.0, 1.0]]
    f = torch.nn.functional.normalize(torch.tensor(rows), dim=1)
    classes, owner = torch.zeros(5, dtype=torch.long), torch.arange(5)
    typical = ppal.typicality(f, classes, owner, 5)
    assert typical[:4].min() > 0.7 and typical[4] < 0.05  # three of its four others alike; one far
    scores = ppal.select(torch.tensor([0.5, 0.5, 0.5, 0.5, 0.6]), f, classes, owner, budget=3)
    order = scores.argsort(descending=True).tolist()
    assert order[0] in {0, 1, 2, 3} and order[1] == 4  # then the outlier: far from the first pick


def test_ppal_typicality_on_many_candidates_is_close_to_the_mean_over_all_at_a_bounded_cost(monkeypatch):
    """Over more candidates than ``REFERENCES`` the typicality is measured against that many of them: within 0.05
    of the mean over all (10 scenes of unequal sizes, 3 classes), with that many similarity rows."""
    g = torch.Generator().manual_seed(0)
    n = 1200
    scene = torch.randint(0, 10, (n,), generator=g) ** 2 % 10  # unequal scenes: some typical, some rare
    centres = torch.randn(10, 16, generator=g)
    f = torch.nn.functional.normalize(centres[scene] + 0.5 * torch.randn(n, 16, generator=g), dim=1)
    classes, owner = scene % 3, torch.arange(n)
    exact = torch.stack([ppal.similarity_to(i, f, classes, owner, n) for i in range(n)]).sum(0).sub(1) / (n - 1)
    rows = []
    real = ppal.similarity_to
    monkeypatch.setattr(ppal, "similarity_to", lambda i, *a: rows.append(i) or real(i, *a))
    typical = ppal.typicality(f, classes, owner, n)
    assert len(rows) <= ppal.REFERENCES and (typical - exact).abs().max() < 0.05


def test_ppal_difficulty_comes_from_the_models_validation_ap():
    from executor.class_stats import ClassStats

    stats = ClassStats(["a", "b", "c"], [10, 5, 0], [0.9, 0.4, None])
    assert stats.difficulty() == pytest.approx([0.1, 0.6, 0.35])
    assert stats.train_shares() == pytest.approx([2 / 3, 1 / 3, 0.0])
    assert ClassStats.from_checkpoint({"ymir_class_stats": stats.to_dict()}) == stats
    assert ClassStats.from_checkpoint({}) is None and ClassStats.from_checkpoint({"ymir_class_stats": {"names": ["a"]}}) is None


# ---------------------------------------------------------------- budget-shaped stages (diversity, ppal, cald)
# An image without uncertainty (no kept box of a wanted class) must never be taken for being far from the others:
# with a pool smaller than the budget (the template's default on a small pool) and a third of it empty, every image
# with a box comes first. Then the degenerate pools and budgets: all empty, a budget of 0 and of 1.

def small_pool(n: int = 12):
    """``n`` images: the first two thirds are near-duplicates of one scene with a box each (uncertainty 0.2-0.9),
    the last third empty (no box, uncertainty 0) and, as features go, each far from everything."""
    with_box = 2 * n // 3
    features = torch.zeros(n, n + 1)
    features[:with_box, 0] = 1.0
    features[:with_box, 1] = torch.linspace(0, 0.01, with_box)  # near-copies
    for i in range(with_box, n):
        features[i, i + 1] = 1.0  # orthogonal to everything else
    features = torch.nn.functional.normalize(features, dim=1)
    uncertainty = torch.cat([torch.linspace(0.9, 0.2, with_box), torch.zeros(n - with_box)])
    return features, uncertainty, with_box


def ppal_inputs(features, uncertainty):
    """ppal's box-level view of ``small_pool``: one box (class 0) per image with uncertainty."""
    owner = torch.nonzero(uncertainty > 0).flatten()
    return features[owner], torch.zeros(len(owner), dtype=torch.long), owner


def cald_inputs(uncertainty):
    """cald's stage-1 view: images without a wanted box score NO_DETECTION; one class profile per image."""
    scores = [float(u) if u > 0 else cald.NO_DETECTION for u in uncertainty]
    profiles = torch.stack([torch.tensor([0.9, 0.1]) if u > 0 else torch.zeros(2) for u in uncertainty])
    return scores, profiles


def orders(features, uncertainty, budget):
    """Each budget-shaped algorithm's ranking (indices, best first)."""
    f, c, o = ppal_inputs(features, uncertainty)
    scores, profiles = cald_inputs(uncertainty)
    two = cald.stage_two(scores, profiles, torch.tensor([0.5, 0.5]), budget)
    return {"diversity": greedy_scores(features, uncertainty, budget).argsort(descending=True, stable=True).tolist(),
            "ppal": ppal.select(uncertainty, f, c, o, budget).argsort(descending=True, stable=True).tolist(),
            "cald": sorted(range(len(two)), key=lambda i: -two[i])}


@pytest.mark.parametrize("budget", [1000, 12, 8, 4])
def test_images_without_a_box_come_after_every_image_with_one(budget):
    features, uncertainty, with_box = small_pool()
    for name, order in orders(features, uncertainty, budget).items():
        assert sorted(order[:with_box]) == list(range(with_box)), (name, budget, order)


def test_ppal_at_the_default_budget_on_a_small_pool_keeps_its_uncertainty_order_among_near_copies():
    """The pool smaller than 2 x budget: stage 2 runs over the images with uncertainty only, so the empty frames
    do not enter it, and the first pick is the most uncertain image."""
    features, uncertainty, with_box = small_pool()
    f, c, o = ppal_inputs(features, uncertainty)
    order = ppal.select(uncertainty, f, c, o, 1000).argsort(descending=True, stable=True).tolist()
    assert order[0] == 0 and set(order[with_box:]) == set(range(with_box, len(uncertainty)))


@pytest.mark.parametrize("budget", [0, 1, 5, 1000])
def test_a_pool_of_empty_images_is_ranked_without_error(budget):
    n = 6
    features = torch.nn.functional.normalize(torch.eye(n) + 0.1, dim=1)
    uncertainty = torch.zeros(n)
    for name, order in orders(features, uncertainty, budget).items():
        assert sorted(order) == list(range(n)), (name, order)
    assert torch.isfinite(greedy_scores(features, uncertainty, budget)).all()
    f, c, o = ppal_inputs(features, uncertainty)
    assert torch.isfinite(ppal.select(uncertainty, f, c, o, budget)).all()


def test_budget_zero_ranks_by_uncertainty_and_budget_one_starts_with_the_most_uncertain():
    features, uncertainty, with_box = small_pool()
    zero = orders(features, uncertainty, 0)
    assert zero["diversity"][:with_box] == zero["ppal"][:with_box] == list(range(with_box))  # by uncertainty
    assert zero["cald"][:with_box] == list(range(with_box))  # stage 2 looks at no image: stage 1's order
    for name, order in orders(features, uncertainty, 1).items():
        assert order[0] == 0, (name, order)


def test_the_top_does_not_depend_on_the_budget_for_diversity_and_cald():
    """YMIR's topk is not passed to the executor: the first k lines with mining_budget k and with the template's
    1000 are the same list (diversity's greedy and cald's one-pick-at-a-time stage 2 both build a prefix)."""
    torch.manual_seed(3)
    n = 40
    features = torch.nn.functional.normalize(torch.randn(n, 8), dim=1)
    uncertainty = torch.rand(n)
    for k in (1, 5, 12):
        small, large = orders(features, uncertainty, k), orders(features, uncertainty, 1000)
        for name in ("diversity", "cald"):
            assert small[name][:k] == large[name][:k], (name, k)


def test_ppal_does_not_fill_the_top_with_outliers_when_the_budget_exceeds_the_pool():
    """10 near-copies of an unsure scene, 10 unsure images alike in part (similarity 0.2), 10 outliers the model is
    nearly sure of (each orthogonal to everything). Farthest-first with a budget of 1000 took the outliers right
    after the second pick; the uncertainty-weighted greedy takes the unsure images, one copy of the scene among them."""
    n = 30
    features = torch.zeros(n, n + 3)
    features[:10, 0] = 1.0
    features[:10, 1] = torch.linspace(0, 0.01, 10)
    for i in range(10, n):
        features[i, i + 2] = 1.0
    features[10:20, n + 2] = 0.5
    features = torch.nn.functional.normalize(features, dim=1)
    uncertainty = torch.cat([torch.full((10,), 0.9), torch.linspace(0.8, 0.5, 10), torch.full((10,), 0.01)])
    f, c, o = ppal_inputs(features, uncertainty)
    for budget in (11, 1000):
        top = ppal.select(uncertainty, f, c, o, budget).argsort(descending=True, stable=True)[:11].tolist()
        assert max(top) < 20 and len([i for i in top if i < 10]) == 1, (budget, top)


def test_ppal_state_puts_each_images_boxes_in_candidate_order():
    """Passes see images grouped by shape; the state hands finish the boxes of image k at image k's place."""
    values = torch.tensor([10, 11, 20, 30, 31, 32])  # boxes of the pass-order images a (2), b (1), c (3)
    counts = torch.tensor([2, 1, 3])
    (moved,) = ppal.ragged_take([values], counts, torch.tensor([2, 0, 1]))  # candidate order: c, a, b
    assert moved.tolist() == [30, 31, 32, 10, 11, 20]


def test_cald_pass_values_equal_the_per_image_definition():
    """``pass_values`` (padded, one set of kernels per pass) gives each image what ``augmentation_value`` gives
    it alone: images with boxes, with none, with no wanted box, and with an augmented output that keeps none."""
    from executor.mining import cald

    generator = torch.Generator().manual_seed(0)

    def dets(n: int) -> torch.Tensor:
        xy = torch.rand(n, 2, generator=generator) * 80
        wh = torch.rand(n, 2, generator=generator) * 30 + 2
        scores = torch.rand(n, 3, generator=generator)
        top, cls = scores.max(1)
        return torch.cat([xy, xy + wh, top[:, None], cls[:, None].float(), scores], 1)

    refs = [dets(n) for n in (3, 0, 5, 2, 4)]
    mapped = [r.clone() for r in refs]
    for m in mapped:
        m[:, :4] += torch.rand(len(m), 4, generator=generator) * 6
    augs = [dets(n) for n in (4, 2, 0, 3, 6)]
    wanted = [torch.tensor([True, False, True]), torch.zeros(0, dtype=torch.bool), torch.ones(5, dtype=torch.bool),
              torch.tensor([False, False]), torch.tensor([True, True, False, True])]
    ours = cald.pass_values(refs, mapped, augs, wanted)
    expected = torch.stack([augmentation_value(r, m, a, w) for r, m, a, w in zip(refs, mapped, augs, wanted, strict=True)])
    assert torch.allclose(ours, expected, atol=1e-5, equal_nan=True), (ours, expected)
    assert ours[1].isnan() and ours[3].isnan() and float(ours[2]) == 0.0  # no ref / none wanted / aug kept none
    none_kept = cald.pass_values(refs, mapped, [a[:0] for a in augs], wanted)
    assert torch.allclose(none_kept, torch.stack([augmentation_value(r, m, a[:0], w) for r, m, a, w
                                                  in zip(refs, mapped, augs, wanted, strict=True)]), equal_nan=True)


def test_cald_cutout_is_per_image_and_batch_independent():
    from executor.mining import cald

    images = torch.rand(3, 3, 64, 96)
    together, _ = cald._cutout(images, torch.zeros(0, 4), [11, 22, 33])
    for i, seed in enumerate((11, 22, 33)):
        alone, _ = cald._cutout(images[i : i + 1], torch.zeros(0, 4), [seed])
        assert torch.equal(alone[0], together[i])
        grey = (together[i] == 0.5).all(0)
        s = int(64 * 0.15)
        assert s * s <= int(grey.sum()) <= 2 * s * s  # two squares of side 15 % of the short side (may overlap)
        for x, y in cald.cutout_corners(64, 96, seed):
            assert bool(grey[y : y + s, x : x + s].all())
