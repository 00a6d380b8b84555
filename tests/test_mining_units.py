"""Each mining algorithm's scoring pinned on small hand-made inputs."""

from __future__ import annotations

import pytest
import torch
from executor.mining import binary_entropy
from executor.mining.aldd import aldd_scores
from executor.mining.cald import _flip, _rotate, _scale, consistency, inconsistency
from executor.mining.diversity import greedy_scores, uncertainty_mass
from executor.mining.entropy import image_entropy

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


def test_cald_consistency_same_boxes_is_one_and_moved_or_rescored_is_less():
    ref = det([10, 10, 30, 30, 0.9, 0])
    assert torch.allclose(consistency(ref, ref, ref), torch.tensor([1.0]))
    moved = det([20, 20, 40, 40, 0.9, 0])
    rescored = det([10, 10, 30, 30, 0.4, 0])
    assert consistency(ref, ref, moved) < 1 and torch.allclose(consistency(ref, ref, rescored), torch.tensor([0.5]))
    assert consistency(ref, ref, det()).tolist() == [0.0]


def test_cald_unwanted_classes_do_not_count():
    """A class weighted 0 is not wanted: an image holding only such boxes has nothing to score (it ranks
    with the images without boxes), and an unwanted box does not dilute a wanted one's inconsistency."""
    ref = det([10, 10, 30, 30, 0.9, 1])
    assert inconsistency(ref, ref, det(), torch.tensor([1.0, 0.0])).isnan()
    assert float(inconsistency(ref, ref, det(), torch.tensor([0.0, 1.0]))) == pytest.approx(1.0)
    both = det([10, 10, 30, 30, 0.9, 0], [40, 40, 60, 60, 0.9, 1])
    kept_only_the_cat = det([40, 40, 60, 60, 0.9, 1])
    assert float(inconsistency(both, both, kept_only_the_cat, torch.tensor([0.0, 1.0]))) == pytest.approx(0.0)
    assert float(inconsistency(both, both, kept_only_the_cat, ONES)) == pytest.approx(0.5)
    assert inconsistency(det(), det(), det(), ONES).isnan()


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
