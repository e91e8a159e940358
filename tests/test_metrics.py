"""Evaluation metrics: pure functions against constructed cases and numpy references."""

import numpy as np
import pytest

from jdbw.evaluation import metrics

K = 10


def _labels(probs, n, seed=0):
  return np.random.default_rng(seed).choice(len(probs), size=n, p=probs)


def test_class_consistency_identity_and_permutation():
  labels = _labels(np.full(K, 0.1), 2000)
  same = metrics.class_consistency(labels, labels, K)
  assert same["accuracy"] == 1.0
  np.testing.assert_array_equal(np.asarray(same["confusion"]), np.diag(np.bincount(labels, minlength=K)))
  shifted = metrics.class_consistency(labels, (labels + 1) % K, K)
  assert shifted["accuracy"] == 0.0
  cm = np.asarray(shifted["confusion"])
  assert cm.sum() == len(labels) and cm[3, 4] == np.sum(labels == 3)


def test_class_consistency_partial_and_missing_class():
  labels = np.array([0, 0, 0, 0, 1, 1])
  pred = np.array([0, 0, 1, 2, 1, 1])
  r = metrics.class_consistency(labels, pred, 3)
  assert r["accuracy"] == pytest.approx(4 / 6)
  assert r["per_class"][0] == pytest.approx(0.5) and r["per_class"][1] == 1.0
  assert np.isnan(r["per_class"][2])


def test_mode_mass_hallucination_counts():
  labels = np.array([0, 0, 0, 0, 1, 2, 3, 4])
  pred = np.array([0, 0, 0, 5, 0, 0, 3, 4])   # one zero lost, two others turned into zeros
  h = metrics.mode_mass_hallucination(labels, pred, mode=0)
  assert h["out_of_mode"] == pytest.approx(1 / 4)
  assert h["into_mode"] == pytest.approx(2 / 4)
  assert metrics.mode_mass_hallucination(labels, labels, 0) == {"into_mode": 0.0, "out_of_mode": 0.0}


def test_over_represented_class():
  p = np.full(K, 0.1)
  q = np.r_[0.5, np.full(K - 1, 0.5 / 9)]
  assert metrics.over_represented_class(p, q) == 0


def test_weight_calibration_oracle_and_uniform():
  """Oracle weights (density ratio to the midpoint) give TV 0; uniform the skew's TV."""
  p = np.full(K, 0.1)
  q = np.r_[0.5, np.full(K - 1, 0.5 / 9)]
  lx, ly = _labels(p, 20000, 1), _labels(q, 20000, 2)
  # Empirical class frequencies, so the oracle is exact on this sample.
  px, qy = np.bincount(lx, minlength=K) / len(lx), np.bincount(ly, minlength=K) / len(ly)
  mid = (px + qy) / 2
  oracle = metrics.weight_calibration(lx, (mid / px)[lx], ly, (mid / qy)[ly], K)
  assert oracle["tv_weighted"] == pytest.approx(0.0, abs=1e-12)
  np.testing.assert_allclose(oracle["hist_x"], mid, atol=1e-12)
  uniform = metrics.weight_calibration(lx, np.ones(len(lx)), ly, np.ones(len(ly)), K)
  assert uniform["tv_weighted"] == pytest.approx(0.5 * np.abs(px - qy).sum())
  assert uniform["tv_unweighted"] == uniform["tv_weighted"]
  # Against the true skew: TV(p, q) = 0.4 (zeros 0.1 vs 0.5), up to sampling noise.
  assert uniform["tv_unweighted"] == pytest.approx(0.4, abs=0.02)
  # Scaling the weights of a domain changes nothing (normalised per domain).
  scaled = metrics.weight_calibration(lx, 7.0 * (mid / px)[lx], ly, (mid / qy)[ly], K)
  assert scaled["tv_weighted"] == pytest.approx(0.0, abs=1e-12)


def test_weighted_histogram_rejects_bad_weights():
  with pytest.raises(ValueError):
    metrics.weighted_class_histogram([0, 1], [1.0, -1.0], 2)
  with pytest.raises(ValueError):
    metrics.weighted_class_histogram([0, 1], [0.0, 0.0], 2)


def test_noise_class_retention():
  labels = np.array([0, 1, 2])
  pred = np.array([[0, 0, 0, 0], [1, 1, 2, 2], [5, 5, 5, 2]])
  r = metrics.noise_class_retention(labels, pred)
  assert r["retention"] == pytest.approx((4 + 2 + 1) / 12)
  assert r["agreement"] == pytest.approx((4 + 2 + 3) / 12)


def test_frechet_distance_matches_closed_form_for_commuting_covariances():
  rng = np.random.default_rng(0)
  mu1, mu2 = rng.normal(size=5), rng.normal(size=5)
  d1, d2 = rng.uniform(0.5, 2, 5), rng.uniform(0.5, 2, 5)
  want = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(d1) - np.sqrt(d2)) ** 2)
  got = metrics.frechet_distance(mu1, np.diag(d1), mu2, np.diag(d2))
  assert got == pytest.approx(want, rel=1e-10)


def test_frechet_distance_general_covariances_against_scipy_sqrtm():
  from scipy import linalg
  rng = np.random.default_rng(1)
  a, b = rng.normal(size=(6, 6)), rng.normal(size=(6, 6))
  c1, c2 = a @ a.T, b @ b.T
  mu1, mu2 = rng.normal(size=6), rng.normal(size=6)
  ref = (np.sum((mu1 - mu2) ** 2) + np.trace(c1) + np.trace(c2)
         - 2 * np.trace(linalg.sqrtm(c1 @ c2)).real)
  assert metrics.frechet_distance(mu1, c1, mu2, c2) == pytest.approx(ref, rel=1e-8)


def test_fd_classifier_self_zero_and_grows_with_shift():
  rng = np.random.default_rng(2)
  f = rng.normal(size=(4000, 16)) @ rng.normal(size=(16, 16))
  assert metrics.fd_classifier(f, f) == pytest.approx(0.0, abs=1e-6)
  g = rng.normal(size=(4000, 16)) @ rng.normal(size=(16, 16))
  shifts = [metrics.fd_classifier(f, f + s) for s in (0.5, 1.0, 2.0)]
  assert shifts == sorted(shifts) and shifts[0] > 0
  # A shift of s in every coordinate adds exactly F s^2 (covariance unchanged).
  assert shifts[1] == pytest.approx(16 * 1.0, rel=1e-6)
  assert metrics.fd_classifier(f, g) > 0


def test_mode_weight_margin_signs_follow_the_targets():
  # X: zeros under-represented (target 3 > 1) -> zeros should carry the largest weight.
  tx, ty = metrics.midpoint_target_weights([0.1] * 10, [0.5] + [0.5 / 9] * 9).values()
  assert tx[0] > 1 > ty[0]
  w = [1.3, 1.1, 0.9] + [1.0] * 7
  assert metrics.mode_weight_margin(w, tx, 0) == pytest.approx(0.2)
  assert metrics.mode_weight_margin([1.0, 1.4] + [1.0] * 8, tx, 0) == pytest.approx(-0.4)
  # Y: zeros over-represented -> zeros should carry the smallest weight.
  assert metrics.mode_weight_margin([0.7, 0.9, 1.2] + [1.0] * 7, ty, 0) == pytest.approx(0.2)
  assert metrics.mode_weight_margin([1.0] * 10, ty, 0) == 0.0   # uniform: no separation
  assert np.isnan(metrics.mode_weight_margin([np.nan] + [1.0] * 9, ty, 0))


def _cubic_kernel_mean(m1, v1, m2, v2):
  """E k(a, b) for independent a ~ N(m1, v1), b ~ N(m2, v2) in one dimension, with KID's
  kernel k(a, b) = (ab + 1)³ (F = 1): E(ab)³ + 3 E(ab)² + 3 E(ab) + 1, and the moments
  of a product of independent factors are products of moments."""
  e1, e2 = (m1, m2)
  s1, s2 = (m1 ** 2 + v1, m2 ** 2 + v2)
  t1, t2 = (m1 ** 3 + 3 * m1 * v1, m2 ** 3 + 3 * m2 * v2)
  return t1 * t2 + 3 * s1 * s2 + 3 * e1 * e2 + 1


@pytest.mark.parametrize("p,q", [((0.0, 1.0), (0.5, 1.0)), ((0.2, 0.5), (-0.3, 2.0)),
                                 ((0.3, 1.0), (0.3, 1.0))])
def test_kid_matches_the_closed_form_mmd_on_known_gaussians(p, q):
  """KID's unbiased MMD² with the cubic kernel against its closed form for 1-D
  Gaussians: MMD² = E k(a, a') + E k(b, b') − 2 E k(a, b); equal laws give 0."""
  rng = np.random.default_rng(3)
  a = rng.normal(p[0], np.sqrt(p[1]), (4000, 1))
  b = rng.normal(q[0], np.sqrt(q[1]), (4000, 1))
  want = (_cubic_kernel_mean(*p, *p) + _cubic_kernel_mean(*q, *q)
          - 2 * _cubic_kernel_mean(*p, *q))
  got, std = metrics.kid(a, b, subset_size=2000, subsets=20)
  assert got == pytest.approx(want, abs=max(0.15 * abs(want), 4 * std / np.sqrt(20), 0.02))
  assert std > 0


def test_kid_is_unbiased_where_fid_is_not_and_refuses_tiny_samples():
  """On two samples of one law KID averages to 0 (its estimate is unbiased), while the
  Fréchet distance of 40 samples in 16-d is clearly positive (its bias)."""
  rng = np.random.default_rng(4)
  vals = [metrics.kid(rng.normal(size=(40, 16)), rng.normal(size=(40, 16)), subsets=5,
                      seed=s)[0] for s in range(40)]
  assert abs(np.mean(vals)) < 3 * np.std(vals) / np.sqrt(len(vals))
  assert metrics.fd_classifier(rng.normal(size=(40, 16)), rng.normal(size=(40, 16))) > 1.0
  with pytest.raises(ValueError, match="at least 2"):
    metrics.kid(np.zeros((1, 3)), np.zeros((5, 3)))


def test_fid_of_samples_approaches_the_closed_form_of_their_gaussians():
  rng = np.random.default_rng(5)
  mu1, mu2 = np.zeros(4), np.array([1.0, 0.0, -0.5, 0.0])
  d1, d2 = np.array([1.0, 2.0, 0.5, 1.0]), np.array([1.0, 1.0, 1.0, 3.0])
  a = mu1 + rng.normal(size=(50000, 4)) * np.sqrt(d1)
  b = mu2 + rng.normal(size=(50000, 4)) * np.sqrt(d2)
  want = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(d1) - np.sqrt(d2)) ** 2)
  assert metrics.fd_classifier(a, b) == pytest.approx(want, abs=0.03)
