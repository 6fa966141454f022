import numpy as np
import pytest

from selfsup.stats import interval_estimate, iqm, probability_of_improvement


def test_iqm_drops_the_outer_quartiles():
    assert iqm(np.array([100.0, 1, 2, 3, -50, 4, 5, 6])) == pytest.approx(3.5)   # middle four of eight
    assert iqm(np.array([7.0])) == 7.0


def test_bootstrap_interval_brackets_the_iqm_and_narrows_with_runs():
    rng = np.random.default_rng(0)
    few, many = rng.normal(1.0, 1.0, 5), rng.normal(1.0, 1.0, 200)
    p, lo, hi = interval_estimate(few)
    assert lo <= p <= hi and hi > lo
    p2, lo2, hi2 = interval_estimate(many)
    assert (hi2 - lo2) < (hi - lo) / 2 and lo2 < 1.0 < hi2
    assert interval_estimate(few) == (p, lo, hi)                       # seeded: reproducible


def test_stratified_bootstrap_resamples_within_each_task():
    scores = np.stack([np.zeros(6), np.full(6, 10.0)], axis=1)         # task 0 always 0, task 1 always 10
    p, lo, hi = interval_estimate(scores)
    assert p == lo == hi == 5.0                                       # every resample keeps both tasks


def test_probability_of_improvement():
    assert probability_of_improvement([3.0, 4, 5], [0.0, 1, 2]) == (1.0, 1.0, 1.0)
    assert probability_of_improvement([1.0, 1], [1.0, 1])[0] == 0.5
    p, lo, hi = probability_of_improvement([1.0, 2, 3], [2.0, 3, 4])
    assert p == pytest.approx(2 / 9) and lo <= p <= hi   # one win (3 > 2), two ties, of nine pairs


def test_bad_shapes_are_errors():
    with pytest.raises(ValueError, match="at least one run"):
        interval_estimate([])
    with pytest.raises(ValueError, match="same tasks"):
        probability_of_improvement(np.zeros((3, 2)), np.zeros((3, 1)))
