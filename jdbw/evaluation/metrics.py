"""Metrics that turn the paper's figures into numbers (labels used here only).

Every function is pure: arrays of predictions, labels, weights or features in,
numbers out. `jdbw.evaluation.evaluator` produces those arrays with jitted, batched
networks over a fixed evaluation sample.

Claims (the paper's figures, docs/paper_map.md) and their metrics:
- Fig. 2, classes are matched: `class_consistency` (X->Y, Y->X and the cycles).
- Fig. 2, zeros turned into other digits: `mode_mass_hallucination`.
- Fig. 3, re-weighted class masses match: `weighted_class_histogram` +
  `total_variation` (weighted vs unweighted).
- Fig. 4, noise carries style, not class: `noise_class_retention`.
- Sample quality: `frechet_distance` in a classifier's feature space ("FD-classifier";
  it is not FID, which uses Inception features).
"""

from __future__ import annotations

import numpy as np


def confusion_matrix(labels, predictions, num_classes: int) -> np.ndarray:
  """[K, K] counts; row = true (source) class, column = predicted class."""
  labels = np.asarray(labels, np.int64).reshape(-1)
  predictions = np.asarray(predictions, np.int64).reshape(-1)
  if labels.shape != predictions.shape:
    raise ValueError(f"labels {labels.shape} and predictions {predictions.shape} differ")
  return np.bincount(labels * num_classes + predictions,
                     minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def class_consistency(labels, predictions, num_classes: int) -> dict:
  """Accuracy of the target classifier on translations against the source labels.

  Also the per-class recall (NaN for classes absent from the sample) and the confusion
  matrix. With cycled images (G_yx(G_xy(x))) and the source-domain classifier this is
  cycle class consistency.
  """
  cm = confusion_matrix(labels, predictions, num_classes)
  support = cm.sum(1)
  with np.errstate(invalid="ignore", divide="ignore"):
    recall = np.where(support > 0, np.diag(cm) / np.maximum(support, 1), np.nan)
  return {"accuracy": float(np.trace(cm) / max(cm.sum(), 1)), "per_class": recall.tolist(),
          "confusion": cm.tolist()}


def over_represented_class(probs_x, probs_y) -> int:
  """The class whose mass differs most between the domains (SR-MNIST: the zeros)."""
  return int(np.argmax(np.abs(np.asarray(probs_x) - np.asarray(probs_y))))


def mode_mass_hallucination(labels, predictions, mode: int) -> dict:
  """Fig. 2's failure as two rates for the mass-shifted class c = `mode`.

  into_mode: fraction of sources of other classes translated into c;
  out_of_mode: fraction of sources of class c translated into another class.
  NaN where the sample has no source of that kind.
  """
  labels, predictions = np.asarray(labels).reshape(-1), np.asarray(predictions).reshape(-1)
  is_c, others = labels == mode, labels != mode
  into = float(np.mean(predictions[others] == mode)) if others.any() else float("nan")
  out = float(np.mean(predictions[is_c] != mode)) if is_c.any() else float("nan")
  return {"into_mode": into, "out_of_mode": out}


def weighted_class_histogram(labels, weights, num_classes: int) -> np.ndarray:
  """Class masses of a sample under per-sample weights, normalised to sum to 1."""
  labels = np.asarray(labels, np.int64).reshape(-1)
  weights = np.asarray(weights, np.float64).reshape(-1)
  if labels.shape != weights.shape:
    raise ValueError(f"labels {labels.shape} and weights {weights.shape} differ")
  if np.any(weights < 0) or not np.all(np.isfinite(weights)) or weights.sum() <= 0:
    raise ValueError("weights must be finite, non-negative and not all zero")
  h = np.bincount(labels, weights=weights, minlength=num_classes)
  return h / h.sum()


def total_variation(p, q) -> float:
  """TV(p, q) = ½ Σ_k |p_k − q_k| of two class histograms (0 = equal, 1 = disjoint)."""
  p, q = np.asarray(p, np.float64), np.asarray(q, np.float64)
  if p.shape != q.shape:
    raise ValueError(f"histograms of different sizes: {p.shape} vs {q.shape}")
  return float(0.5 * np.abs(p - q).sum())


def weight_calibration(labels_x, weights_x, labels_y, weights_y, num_classes: int) -> dict:
  """Fig. 3 as a number: TV between the two domains' weighted class histograms.

  `weights_*` are the loss weights the trained weight networks give each sample,
  normalised per domain over the whole evaluation sample. `tv_unweighted` is the
  same TV with uniform weights: the mass shift the weights have to undo.
  """
  hx = weighted_class_histogram(labels_x, weights_x, num_classes)
  hy = weighted_class_histogram(labels_y, weights_y, num_classes)
  ux = weighted_class_histogram(labels_x, np.ones(np.size(labels_x)), num_classes)
  uy = weighted_class_histogram(labels_y, np.ones(np.size(labels_y)), num_classes)
  return {"tv_weighted": total_variation(hx, hy), "tv_unweighted": total_variation(ux, uy),
          "hist_x": hx.tolist(), "hist_y": hy.tolist(),
          "hist_x_unweighted": ux.tolist(), "hist_y_unweighted": uy.tolist()}


def midpoint_target_weights(probs_x, probs_y) -> dict:
  """Per-class weights (x m, 1 = uniform) that move both domains to the midpoint mixture.

  With class masses p (X) and q (Y), weighting X's class k by (p_k + q_k) / (2 p_k) and
  Y's by (p_k + q_k) / (2 q_k) gives both the class masses (p + q) / 2 (TV 0): the
  reference lines of Figure 3. It is one solution among many (any weights with equal
  weighted masses make TV 0); NaN for a class a domain never draws.
  """
  p, q = np.asarray(probs_x, np.float64), np.asarray(probs_y, np.float64)
  mid = 0.5 * (p + q)
  with np.errstate(invalid="ignore", divide="ignore"):
    return {"x": np.where(p > 0, mid / np.where(p > 0, p, 1), np.nan).tolist(),
            "y": np.where(q > 0, mid / np.where(q > 0, q, 1), np.nan).tolist()}


def per_class_mean_weight(labels, weights, num_classes: int) -> list:
  """Mean of `weights` x N per class (1 = uniform; NaN for absent classes)."""
  labels = np.asarray(labels, np.int64).reshape(-1)
  w = np.asarray(weights, np.float64).reshape(-1) * labels.size
  sums = np.bincount(labels, weights=w, minlength=num_classes)
  counts = np.bincount(labels, minlength=num_classes)
  with np.errstate(invalid="ignore", divide="ignore"):
    return np.where(counts > 0, sums / np.maximum(counts, 1), np.nan).tolist()


def mode_weight_margin(mean_weights, target_weights, mode: int) -> float:
  """How far the mass-shifted class stands out in one domain's per-class mean weights,
  in the direction its target asks: where the target up-weights it (target > 1),
  w[mode] - max of the other classes; where it down-weights it, min of the others -
  w[mode]. > 0: the mode is the extreme class, as Fig. 3 should show; NaN if absent."""
  w = np.asarray(mean_weights, np.float64)
  s = 1.0 if target_weights[mode] >= 1.0 else -1.0
  others = np.delete(s * w, mode)
  if np.isnan(w[mode]) or np.all(np.isnan(others)):
    return float("nan")
  return float(s * w[mode] - np.nanmax(others))


def noise_class_retention(labels, predictions) -> dict:
  """Fig. 4 as numbers, for predictions [N sources, K noise draws].

  retention: fraction of (source, noise) translations classified as the source's
  class; agreement: fraction of draws that agree with the per-source majority class
  (stability under the noise, whether or not that class is right).
  """
  predictions = np.asarray(predictions)
  labels = np.asarray(labels).reshape(-1, 1)
  if predictions.ndim != 2 or predictions.shape[0] != labels.shape[0]:
    raise ValueError(f"predictions must be [N, draws]; got {predictions.shape} for"
                     f" {labels.shape[0]} sources")
  k = int(predictions.max(initial=0)) + 1
  counts = np.stack([np.bincount(row, minlength=k) for row in predictions])
  return {"retention": float(np.mean(predictions == labels)),
          "agreement": float(np.mean(counts.max(1) / predictions.shape[1]))}


def gaussian_stats(features) -> tuple[np.ndarray, np.ndarray]:
  """Mean and (unbiased) covariance of [N, F] features, in float64."""
  f = np.asarray(features, np.float64)
  if f.ndim != 2 or f.shape[0] < 2:
    raise ValueError(f"features must be [N >= 2, F]; got {f.shape}")
  return f.mean(0), np.cov(f, rowvar=False)


def frechet_distance(mu1, cov1, mu2, cov2) -> float:
  """‖μ1 − μ2‖² + Tr(Σ1 + Σ2 − 2 (Σ1 Σ2)^½) between two Gaussians.

  Tr (Σ1 Σ2)^½ = Σ sqrt(eig(Σ1^½ Σ2 Σ1^½)), a symmetric PSD matrix, so only
  symmetric eigendecompositions are needed (stable where Σ1 Σ2 is near singular).
  """
  mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
  cov1, cov2 = np.asarray(cov1, np.float64), np.asarray(cov2, np.float64)
  e1, v1 = np.linalg.eigh(cov1)
  s1 = (v1 * np.sqrt(np.clip(e1, 0, None))) @ v1.T
  middle = s1 @ cov2 @ s1
  eig = np.linalg.eigvalsh(0.5 * (middle + middle.T))
  tr_sqrt = np.sqrt(np.clip(eig, 0, None)).sum()
  d = float(np.sum((mu1 - mu2) ** 2) + np.trace(cov1) + np.trace(cov2) - 2.0 * tr_sqrt)
  return max(d, 0.0)


def fd_classifier(features_a, features_b) -> float:
  """Fréchet distance between Gaussian fits of two samples' classifier features."""
  return frechet_distance(*gaussian_stats(features_a), *gaussian_stats(features_b))


def kid(features_a, features_b, subset_size: int = 1000, subsets: int = 100,
        seed: int = 0) -> tuple[float, float]:
  """Kernel Inception Distance (Bińkowski et al. 2018): the unbiased estimate of MMD²
  with the cubic polynomial kernel k(a, b) = (a·b / F + 1)³, over `subsets` random
  subsets of m = min(subset_size, N_a, N_b) rows of each sample (without replacement
  within a subset); (mean, sample std over the subsets). Unbiased, so it can be
  slightly negative, and it stays meaningful for small samples (a class of a few dozen
  images) where the Fréchet distance's covariance is degenerate."""
  a, b = np.asarray(features_a, np.float64), np.asarray(features_b, np.float64)
  if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
    raise ValueError(f"features must be [N, F] of one F; got {a.shape} and {b.shape}")
  m = min(subset_size, len(a), len(b))
  if m < 2:
    raise ValueError(f"KID needs at least 2 samples per side; got {len(a)} and {len(b)}")
  rng, f = np.random.default_rng(seed), a.shape[1]
  k = lambda u, v: (u @ v.T / f + 1.0) ** 3
  vals = []
  for _ in range(subsets):
    x, y = a[rng.choice(len(a), m, replace=False)], b[rng.choice(len(b), m, replace=False)]
    kxx, kyy = k(x, x), k(y, y)
    vals.append((kxx.sum() - np.trace(kxx)) / (m * (m - 1))
                + (kyy.sum() - np.trace(kyy)) / (m * (m - 1)) - 2.0 * k(x, y).mean())
  return float(np.mean(vals)), float(np.std(vals, ddof=1)) if subsets > 1 else 0.0


def cluster_agreement(labels, clusters, examples: int = 8) -> dict:
  """How found clusters (BalaGAN's modalities) match the true classes, for monitoring:
  purity (each cluster counted as its majority class), normalised mutual information
  (scikit-learn's), each cluster's size and majority class, and the sample indices of
  up to `examples` members per cluster (for the figure)."""
  from sklearn.metrics import normalized_mutual_info_score
  labels, clusters = np.asarray(labels), np.asarray(clusters)
  ids = np.unique(clusters)
  majority = {int(c): int(np.bincount(labels[clusters == c]).argmax()) for c in ids}
  purity = sum(np.sum(labels[clusters == c] == majority[int(c)]) for c in ids) / len(labels)
  return {"purity": float(purity),
          "nmi": float(normalized_mutual_info_score(labels, clusters)),
          "sizes": {int(c): int(np.sum(clusters == c)) for c in ids},
          "majority_class": majority,
          "examples": {int(c): np.flatnonzero(clusters == c)[:examples].tolist() for c in ids}}

