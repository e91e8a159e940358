"""`mixture2d`: a 2-D Gaussian mixture domain with a known map between the domains.

The instrument of `docs/results.md` ("2-D mixture"): the modes play the classes of the
image data sets, their masses follow the same `--classes_{x,y}` syntax, and the map
between the domains is known, so the right translation, the right classes and the
right weights are all known exactly.

A source string is `mixture2d` or `mixture2d:key=value,...` with keys

  modes   K, the number of modes (default 4), on a circle at angles 2πk/K
  radius  radius of that circle (2)
  sigma   isotropic standard deviation of each mode (0.15)
  rotate  rotation of the whole domain in degrees (0)
  scale   scaling of the whole domain (1)
  dx, dy  shift of the whole domain (0, 0)

A domain's points are p = scale · R(rotate) · (μ_k + σ ε) + (dx, dy), ε ~ N(0, I), k
the mode (the label). Two domains with the same modes, radius and sigma are images of
one base mixture under two affine maps, so the true translation X -> Y is the affine map
`true_map(mixture_x, mixture_y)` (mode k goes to mode k) and Y -> X is its inverse.

Streams are infinite and fresh (no finite pool): draw i of a split is a pure function of
(stream seed, split, i), drawn by tf.data with stateless ops in blocks, so the same seed
gives the same stream, the splits are independent, and each host draws its own points.
"""

from __future__ import annotations

import dataclasses
import math
import zlib

import numpy as np

from jdbw.errors import ConfigError

NAME = "mixture2d"
DIM = 2
_BLOCK = 256  # points per stateless draw inside tf.data (amortises per-element cost)


@dataclasses.dataclass(frozen=True)
class Mixture2D:
  modes: int = 4
  radius: float = 2.0
  sigma: float = 0.15
  rotate: float = 0.0
  scale: float = 1.0
  dx: float = 0.0
  dy: float = 0.0

  @property
  def matrix(self) -> np.ndarray:
    """A = scale · R(rotate): the domain's linear part (float64 [2, 2])."""
    a = math.radians(self.rotate)
    return self.scale * np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])

  @property
  def offset(self) -> np.ndarray:
    return np.array([self.dx, self.dy], np.float64)

  @property
  def base_means(self) -> np.ndarray:
    """μ_k of the base mixture, [K, 2]."""
    t = 2 * np.pi * np.arange(self.modes) / self.modes
    return self.radius * np.stack([np.cos(t), np.sin(t)], -1)

  @property
  def means(self) -> np.ndarray:
    """The domain's mode centres A μ_k + b, [K, 2]."""
    return self.base_means @ self.matrix.T + self.offset

  def sample_numpy(self, labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Points of the given modes (numpy; tests and references)."""
    base = self.base_means[labels] + self.sigma * rng.standard_normal((len(labels), DIM))
    return (base @ self.matrix.T + self.offset).astype(np.float32)

  def dataset(self, probs: np.ndarray, seed: int, split: str):
    """Infinite tf.data stream of {'image': f32 [2] (the point), 'label': i32 (the mode)}."""
    import tensorflow as tf
    log_p = np.where(probs > 0, np.log(np.maximum(probs, 1e-30)), -1e30).astype(np.float32)
    stream = int(np.random.SeedSequence(
        [seed, zlib.crc32(f"{NAME}|{split}".encode())]).generate_state(1)[0])
    base = tf.constant(self.base_means, tf.float32)
    a_t = tf.constant(self.matrix.T, tf.float32)
    b = tf.constant(self.offset, tf.float32)
    sigma = float(self.sigma)

    def block(i):
      key = tf.stack([tf.constant(stream, tf.int64), i])
      k_mode, k_noise = tf.unstack(tf.random.experimental.stateless_split(key, 2))
      labels = tf.random.stateless_categorical(tf.constant(log_p)[None], _BLOCK, k_mode)[0]
      eps = tf.random.stateless_normal([_BLOCK, DIM], k_noise)
      points = (tf.gather(base, labels) + sigma * eps) @ a_t + b
      return {"image": points, "label": tf.cast(labels, tf.int32)}

    return tf.data.Dataset.counter().map(block).unbatch()


# The source's keys and their types: Mixture2D's fields (their defaults' types).
_FIELDS = {f.name: type(f.default) for f in dataclasses.fields(Mixture2D)}


def parse(source: str, what: str = "--source") -> Mixture2D:
  """'mixture2d[:key=value,...]' -> Mixture2D; one-line ConfigError otherwise."""
  kind, _, arg = source.partition(":")
  if kind != NAME:
    raise ConfigError(f"{what}: {source!r} is not a {NAME} source")
  values = {}
  for item in filter(None, (s.strip() for s in arg.split(","))):
    key, sep, val = item.partition("=")
    if not sep or key not in _FIELDS:
      raise ConfigError(f"{what}: cannot parse {item!r} in {source!r}; expected key=value"
                        f" with keys {', '.join(_FIELDS)}, e.g. {NAME}:rotate=20,scale=1.1")
    if key in values:
      raise ConfigError(f"{what}: {key!r} is given twice in {source!r}")
    try:
      values[key] = _FIELDS[key](val)
    except ValueError:
      raise ConfigError(f"{what}: {key}={val!r} in {source!r} is not a"
                        f" {_FIELDS[key].__name__}") from None
  m = Mixture2D(**values)
  if m.modes < 2:
    raise ConfigError(f"{what}: modes={m.modes} in {source!r}; expected at least 2")
  if not (m.radius > 0 and m.sigma > 0 and m.scale > 0):
    raise ConfigError(f"{what}: radius, sigma and scale must be > 0 in {source!r}")
  if not all(np.isfinite([m.rotate, m.dx, m.dy])):
    raise ConfigError(f"{what}: rotate, dx and dy must be finite in {source!r}")
  return m


def true_map(mx: Mixture2D, my: Mixture2D) -> tuple[np.ndarray, np.ndarray]:
  """(M, c) with G_xy(x) = M x + c the exact translation X -> Y (mode k to mode k).

  Needs both domains to be images of the same base mixture under two affine maps (same
  modes, radius and sigma); Y -> X is x = M⁻¹ (y − c).
  """
  base = lambda m: (m.modes, m.radius, m.sigma)
  if base(mx) != base(my):
    raise ConfigError(
        "--oracle_generators: the domains must share modes, radius and sigma (one base"
        f" mixture under two affine maps); got {base(mx)} and {base(my)}"
        " as (modes, radius, sigma)")
  m = my.matrix @ np.linalg.inv(mx.matrix)
  return m, my.offset - m @ mx.offset
