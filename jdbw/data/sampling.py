"""Class-skewed sampling (paper §4.1): the per-class probabilities of a domain."""

from __future__ import annotations

import numpy as np

from jdbw.errors import ConfigError

_TOL = 1e-6


def parse_class_spec(spec: str, num_classes: int, what: str = "--classes",
                     names=()) -> dict[int, float]:
  """Parses 'c:p,c:p,...' (e.g. '0:0.5') into {class: probability}; with class `names`
  (a folder source's subfolders) a class may also be named ('shoes:0.9').

  An empty spec means the source's natural class frequencies.
  """
  out: dict[int, float] = {}
  for item in filter(None, (s.strip() for s in spec.split(","))):
    cls, sep, prob = item.rpartition(":")
    if cls in names:
      cls = str(list(names).index(cls))
    try:
      if not sep:
        raise ValueError
      c, p = int(cls), float(prob)
    except ValueError:
      raise ConfigError(
          f"{what}: cannot parse {item!r}; expected 'class:probability' pairs"
          " separated by commas, e.g. '0:0.5'"
          + (f" (classes by name: {', '.join(names)})" if names else "")) from None
    if not 0 <= c < num_classes:
      raise ConfigError(
          f"{what}: class {c} does not exist; the data set has classes 0..{num_classes - 1}")
    if c in out:
      raise ConfigError(f"{what}: class {c} is listed twice")
    if not (p >= 0 and np.isfinite(p)):
      raise ConfigError(f"{what}: probability of class {c} is {p}; expected a number >= 0")
    out[c] = p
  total = sum(out.values())
  if total > 1 + _TOL:
    raise ConfigError(f"{what}: listed probabilities sum to {total:g}; expected at most 1")
  return out


def class_probabilities(spec: str, class_counts: np.ndarray,
                        what: str = "--classes", names=()) -> np.ndarray:
  """Per-class sampling probabilities for `spec` given the source's class counts.

  Listed classes get exactly their probabilities; the unlisted ones share the rest in
  proportion to their natural frequencies (the authors' SR-MNIST sampler: zeros
  up-weighted to one half, the other digits keep their relative frequencies).
  """
  counts = np.asarray(class_counts, dtype=np.float64)
  listed = parse_class_spec(spec, len(counts), what, names)
  probs = np.zeros(len(counts))
  for c, p in listed.items():
    probs[c] = p
  rest = 1.0 - sum(listed.values())
  unlisted = np.array([c not in listed for c in range(len(counts))])
  unlisted_mass = counts[unlisted].sum()
  if rest > _TOL:
    if unlisted_mass == 0:
      raise ConfigError(
          f"{what}: listed probabilities sum to {1 - rest:g} < 1 but no other class"
          " has examples to take the rest")
    probs[unlisted] = rest * counts[unlisted] / unlisted_mass
  for c in np.flatnonzero((probs > 0) & (counts == 0)):
    raise ConfigError(f"{what}: class {c} has probability {probs[c]:g} but no examples in the data")
  return probs / probs.sum()
