"""The active-learning benchmark's significance test, pinned on hand-made gains."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))

from active_learning import holm, parse_arm, sign_flip_p  # noqa: E402


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
