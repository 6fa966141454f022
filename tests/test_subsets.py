import torch

from selfsup.subsets import sample_indices


def test_stratified_sample_of_a_class_sorted_set_keeps_every_class():
    labels = torch.arange(10).repeat_interleave(100)          # sorted by class, as an ImageFolder is
    idx = sample_indices(1000, 50, seed=3, labels=labels)
    assert len(idx) == 50 and len(set(idx.tolist())) == 50
    assert torch.equal(torch.bincount(labels[idx], minlength=10), torch.full((10,), 5))
    assert torch.equal(idx, sample_indices(1000, 50, seed=3, labels=labels))      # seeded
    assert not torch.equal(idx, sample_indices(1000, 50, seed=4, labels=labels))


def test_uneven_classes_get_their_share_and_the_total_is_exact():
    labels = torch.tensor([0] * 70 + [1] * 20 + [2] * 10)
    idx = sample_indices(100, 9, seed=0, labels=labels)
    assert len(idx) == 9
    counts = torch.bincount(labels[idx], minlength=3).tolist()
    assert counts[0] in (6, 7) and counts[1] in (2, 3) and counts[2] in (0, 1, 2) and sum(counts) == 9


def test_unlabelled_sample_is_random_not_the_first_rows():
    idx = sample_indices(1000, 10, seed=0)
    assert len(idx) == 10 and idx.max() >= 10
    assert torch.equal(sample_indices(5, 0, seed=0), torch.arange(5))   # no cap: everything
    assert torch.equal(sample_indices(5, 9, seed=0), torch.arange(5))
