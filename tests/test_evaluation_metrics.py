"""Top-k over accepted classes (plain and ObjectNet-mapped) and CE/mCE arithmetic on constructed logits."""

import pytest
import torch

from trainers.evaluation.metrics import (
    TopKCounter,
    accepted_classes,
    corruption_errors,
    mean_corruption_error,
    topk_hits,
)
from trainers.evaluation.suites import alexnet_corruption_errors, objectnet_mapping


def _ranked_logits(rankings: list[list[int]], num_classes: int) -> torch.Tensor:
    """Logits whose descending order starts with each row's listed classes (the rest tie far below)."""
    logits = torch.full((len(rankings), num_classes), -100.0)
    for row, classes in enumerate(rankings):
        for rank, index in enumerate(classes):
            logits[row, index] = 10.0 - rank
    return logits


def test_plain_topk_counts_label_in_top_k():
    logits = _ranked_logits([[2, 0, 1], [0, 1, 2], [1, 2, 0]], 3)
    labels = torch.tensor([2, 1, 0])
    hits = topk_hits(logits, accepted_classes(labels, 3), ks=(1, 2))
    assert hits[1].tolist() == [True, False, False]
    assert hits[2].tolist() == [True, True, False]


def test_objectnet_hit_is_any_mapped_index_in_top_k():
    mapping = objectnet_mapping()
    assert len(mapping) == 113 and sum(len(v) for v in mapping.values()) == 125
    assert mapping["chair"] == (423, 559, 765)
    folders = ["chair", "banana", "bicycle", "backpack"]
    label_classes = torch.zeros(len(folders), 1000, dtype=torch.bool)
    for label, folder in enumerate(folders):
        label_classes[label, list(mapping[folder])] = True
    logits = _ranked_logits(
        [
            [765, 1, 2, 3, 4],  # chair: its third mapped index ranks first -> top-1 and top-5 hit
            [1, 2, 954, 3, 4],  # banana: 954 ranks third -> top-5 hit only
            [444, 0, 1, 2, 3],  # bicycle (671, 444): second mapped index first -> top-1 hit
            [1, 2, 3, 4, 5, 414],  # backpack: 414 ranks sixth -> miss
        ],
        1000,
    )
    labels = torch.tensor([0, 1, 2, 3])
    hits = topk_hits(logits, accepted_classes(labels, 1000, label_classes))
    assert hits[1].tolist() == [True, False, True, False]
    assert hits[5].tolist() == [True, True, True, False]

    counter = TopKCounter()
    counter.update(logits[:2], accepted_classes(labels[:2], 1000, label_classes))
    second = TopKCounter()
    second.update(logits[2:], accepted_classes(labels[2:], 1000, label_classes))
    counter.merge(second)
    assert counter.samples == 4
    assert counter.accuracy(1) == pytest.approx(2 / 4)
    assert counter.accuracy(5) == pytest.approx(3 / 4)


def test_topk_larger_than_classes_is_clipped():
    hits = topk_hits(_ranked_logits([[1, 0]], 2), accepted_classes(torch.tensor([0]), 2))
    assert hits[1].tolist() == [False] and hits[5].tolist() == [True]


def test_ce_and_mce_from_constructed_logits_match_hand_computation():
    alexnet = alexnet_corruption_errors()
    assert len(alexnet) == 15 and alexnet["gaussian_noise"] == pytest.approx(0.886428)
    # Ten images per (corruption, severity); the first `correct` of them are predicted right.
    correct = {"gaussian_noise": {1: 9, 2: 7, 3: 5}, "contrast": {1: 8, 2: 8, 3: 2}}
    labels = torch.arange(10) % 4
    errors: dict[str, dict[int, float]] = {}
    for corruption, by_severity in correct.items():
        for severity, right in by_severity.items():
            predicted = [int(label) if i < right else (int(label) + 1) % 4 for i, label in enumerate(labels)]
            counter = TopKCounter()
            counter.update(_ranked_logits([[p] for p in predicted], 4), accepted_classes(labels, 4))
            errors.setdefault(corruption, {})[severity] = 1.0 - counter.accuracy(1)
    assert errors["gaussian_noise"] == pytest.approx({1: 0.1, 2: 0.3, 3: 0.5})

    per_corruption = corruption_errors(errors, alexnet)
    # gaussian_noise: mean error 0.3 / 0.886428; contrast: mean error (0.2+0.2+0.8)/3 = 0.4 / 0.853204.
    assert per_corruption["gaussian_noise"] == pytest.approx(100 * 0.3 / 0.886428)
    assert per_corruption["contrast"] == pytest.approx(100 * 0.4 / 0.853204)
    assert mean_corruption_error(per_corruption) == pytest.approx((33.843696 + 46.882106) / 2, abs=1e-5)


def test_corruptions_outside_the_alexnet_table_get_no_ce():
    assert corruption_errors({"speckle_noise": {1: 0.5}, "fog": {1: 0.5}}, alexnet_corruption_errors()).keys() == {"fog"}
