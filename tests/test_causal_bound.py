"""The causal-bound estimator (datagen.causal_bound) on constructed features, against values
computed by hand.

Features [0, 0] and [ln 3, 0] have softmaxes p = (1/2, 1/2) and q = (3/4, 1/4), so
    -H(p, p) = ln 1/2                          = -0.693147
    -H(p, q) = 1/2 ln 3/4 + 1/2 ln 1/4         = -0.836988
    -H(q, p) = ln 1/2                          = -0.693147
    -H(q, q) = 3/4 ln 3/4 + 1/4 ln 1/4         = -0.562335
"""

import math

import pytest
import torch

from datagen.causal_bound import causal_bound, pair_log_likelihoods, query_log_likelihoods

LN3 = math.log(3)
HALF, QUARTERS = [0.0, 0.0], [LN3, 0.0]
REAL = torch.tensor([HALF, QUARTERS])
GENERATED = torch.tensor([HALF, QUARTERS])


def test_pair_log_likelihoods_are_negative_cross_entropies_of_the_softmaxes():
    pairs = pair_log_likelihoods(REAL, GENERATED)
    assert pairs.flatten().tolist() == pytest.approx([-0.693147, -0.836988, -0.693147, -0.562335], abs=1e-6)


def test_nearest_takes_the_best_generated_image_and_the_mean_is_per_real_image():
    bound = causal_bound(REAL, torch.tensor([0, 0]), GENERATED, torch.tensor([0, 0]))
    # real [0,0]: max(-0.693147, -0.836988); real [ln3,0]: max(-0.693147, -0.562335)
    assert bound.mean == pytest.approx((-0.693147 - 0.562335) / 2, abs=1e-6)
    assert bound.total == pytest.approx(-0.693147 - 0.562335, abs=1e-6)
    assert bound.queries == 2


def test_sum_is_the_log_of_the_summed_probabilities():
    scores = query_log_likelihoods(REAL, GENERATED, estimate="sum")
    # log(1/2 + e^-0.836988) = log(0.5 + 0.433013); log(1/2 + e^-0.562335) = log(0.5 + 0.569877)
    assert scores.tolist() == pytest.approx([math.log(0.933013), math.log(1.069877)], abs=1e-6)


def test_each_real_image_meets_only_its_own_class():
    # real [0,0] is class 0 and only sees the generated [ln3,0]; real [ln3,0] (class 1) only [0,0].
    bound = causal_bound(REAL, torch.tensor([0, 1]), GENERATED, torch.tensor([1, 0]))
    assert bound.mean == pytest.approx((-0.836988 - 0.693147) / 2, abs=1e-6)
    across = causal_bound(REAL, torch.tensor([0, 1]), GENERATED, torch.tensor([1, 0]), same_class=False)
    assert across.mean == pytest.approx((-0.693147 - 0.562335) / 2, abs=1e-6)


def test_temperature_divides_the_features():
    # At T = 1/2, [ln3, 0] becomes [ln9, 0]: softmax (9/10, 1/10); its best match is itself,
    # 9/10 ln 9/10 + 1/10 ln 1/10 = -0.325083.
    scores = query_log_likelihoods(torch.tensor([QUARTERS]), GENERATED, temperature=0.5)
    assert scores.tolist() == pytest.approx([-0.325083], abs=1e-6)


def test_an_exact_duplicate_is_the_best_a_real_image_can_score():
    real, generated = torch.randn(5, 8), torch.randn(40, 8)
    with_duplicates = torch.cat([generated, real])
    entropy = -(torch.softmax(real.double(), 1) * torch.log_softmax(real.double(), 1)).sum(1)
    assert query_log_likelihoods(real, with_duplicates).tolist() == pytest.approx((-entropy).tolist(), abs=1e-9)
    assert (query_log_likelihoods(real, generated) < -entropy).all()


def test_many_real_images_are_scored_in_chunks_with_the_same_result(monkeypatch: pytest.MonkeyPatch):
    real, generated = torch.randn(10, 4), torch.randn(7, 4)
    whole = query_log_likelihoods(real, generated, estimate="sum")
    monkeypatch.setattr("datagen.causal_bound._MAX_PAIRS", 20)  # 2 real images per chunk
    assert query_log_likelihoods(real, generated, estimate="sum").tolist() == pytest.approx(whole.tolist(), abs=1e-12)


def test_a_class_without_generated_images_is_refused():
    with pytest.raises(ValueError, match="class 1 has real images but no generated image"):
        causal_bound(REAL, torch.tensor([0, 1]), GENERATED, torch.tensor([0, 0]))
