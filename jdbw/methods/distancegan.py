"""DistanceGAN (Benaim & Wolf 2017): Distance, Self-distance, Distance + Cycle, one-sided,
each with or without batch weight, as a variant of `jdbw.methods.cyclegan`.

The distance constraint asks a mapping to keep the (normalised) distances between
images: for a pair i, j of a batch, with d(a, b) = mean |a − b|,

  L_dist(x → y) = mean over pairs i < j of | (d(x_i, x_j) − μ_x) / σ_x − (d(G(x_i), G(x_j)) − μ_y) / σ_y |

(`--distance=pairwise`); the self-distance (`self`) compares the top and bottom halves of
each image instead of two images, and `both` adds the two. μ and σ are estimated before
training from `distance_batches` batches of each domain, as the authors' code does:
pairwise, the distances between whole *batches* (the mean over the batch of aligned
image pairs, so σ is that of a batch mean, about √B smaller than a single pair's);
self, each batch's mean top-bottom distance. They are stored in the train state.
Weights 0.05 (x → y) and 0.1 (y → x); `--cycle_weight` adds the authors' optional
reconstruction term (squared error, weight 1 in their MNIST-SVHN code); LSGAN, no
history pool, discriminator losses not halved (the authors' MNIST-SVHN solver).

32x32 networks: the authors' MNIST <-> SVHN encoder-decoder and DCGAN discriminator
(`jdbw.nets.cyclegan`), batch norm over the global batch. `--one_sided` trains G_xy and
D_y alone (the paper's one-sided mapping): no cycle, only x → y; batch weight is then
Algorithm 2's (`--batch_weight=one_sided`, W(x) alone).

Batch weight: as CycleGAN + BW, on the fake side of each GAN term; the distance and
cycle terms stay unweighted unless `--bw_reconstruction`, which weights each pair by
ω_i ω_j (renormalised) and each cycle term by ω_i. Deviations from the authors' loop:
one Adam step per part on the sum of its losses (they step G once per direction and D
once on real and once on fake images); the distances run over the global batch.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from jdbw import config as config_lib
from jdbw import losses, nets, parallel
from jdbw.methods import cyclegan

DISTANCES = ("pairwise", "self", "both")


@dataclasses.dataclass(frozen=True)
class DistanceGANConfig(cyclegan.CycleGANConfig):
  """DistanceGAN's MNIST-SVHN settings (the authors' code) by default."""
  g_dim: int = config_lib.setting(
      64, "Generator width (distancegan: the authors' 64; dtn: the decoder g; xgan: the"
      " decoders).")
  d_dim: int = config_lib.setting(
      64, "DCGAN discriminator width (distancegan: the authors' 64; dtn; xgan).")
  distance: str = config_lib.setting(
      "pairwise",
      "Pairwise (Distance), self (Self-distance) or both.", choices=DISTANCES)
  # λ_A: x -> y
  distance_weight_x: float = config_lib.setting(0.05, "Distance weight x -> y (λ_A).")
  # λ_B: y -> x
  distance_weight_y: float = config_lib.setting(0.1, "Distance weight y -> x (λ_B).")
  normalize_distances: bool = config_lib.setting(
      True,
      "Normalise distances by μ, σ estimated before training.")
  # batches per domain for μ, σ (authors: up to 400)
  distance_batches: int = config_lib.setting(16, "Batches per domain for the distance statistics.")
  one_sided: bool = config_lib.setting(False, "One-sided: G_xy and D_y alone.")
  cycle_weight: float = 0.0
  identity_weight: float = 0.0
  pool_size: int = 0
  d_loss_scale: float = 1.0

  BATCH_WEIGHTS = ("none", "two_sided", "one_sided")

  def check(self):
    from jdbw.errors import ConfigError
    super().check()
    if self.distance not in DISTANCES:
      raise ConfigError(f"--distance: got {self.distance!r}; expected one of {DISTANCES}")
    if self.distance_weight_x < 0 or self.distance_weight_y < 0:
      raise ConfigError("--distance_weight_x/_y: expected >= 0")
    if self.normalize_distances and self.distance_batches < 3:
      raise ConfigError(f"--distance_batches: got {self.distance_batches}; expected >= 3"
                        " (a spread over pairs of batches)")
    if self.one_sided and (self.cycle_weight or self.identity_weight):
      raise ConfigError("--one_sided: trains G_xy alone; set --cycle_weight=0 and"
                        " --identity_weight=0")
    if self.one_sided and self.pool_size:
      raise ConfigError(f"--pool_size: the one-sided step has no history pool; got"
                        f" {self.pool_size}, expected 0 with --one_sided")
    if (self.batch_weight == "one_sided") != self.one_sided and self.batch_weight != "none":
      raise ConfigError(f"--batch_weight={self.batch_weight}: with --one_sided use"
                        " one_sided (W(x) alone), otherwise two_sided")
    if self.resolution != 32:
      raise ConfigError(f"--resolution: the DistanceGAN networks are the authors' 32x32"
                        f" ones; got {self.resolution}")

  def _check_networks(self):
    config_lib.positive(self, "g_dim", "d_dim")


# --- distances (pure; tests compare them with numpy) ---

def image_distance(a, b):
  """d(a, b) = mean |a − b| over each pair of images: [n] for [n, ...] inputs."""
  return jnp.mean(jnp.abs(a - b).reshape(a.shape[0], -1).astype(jnp.float32), axis=-1)


def pairwise_distances(a):
  """d(a_i, a_j) for every pair: [n, n]."""
  flat = a.reshape(a.shape[0], -1).astype(jnp.float32)
  return jnp.mean(jnp.abs(flat[:, None, :] - flat[None, :, :]), axis=-1)


def halves(a):
  """Top and bottom halves of NHWC images (the authors' chunk along the height)."""
  h = a.shape[1] // 2
  return a[:, :h], a[:, h:2 * h]


def self_distance(a):
  """d(top half, bottom half) per image: [n]."""
  top, bottom = halves(a)
  return image_distance(top, bottom)


def normalised(d, mu, sd):
  return (d - mu) / sd


def pairwise_loss(src, fake, stats_src, stats_fake, pair_weights=None):
  """mean over pairs i < j of |norm d(src_i, src_j) − norm d(fake_i, fake_j)|.

  `stats_*` = (μ, σ) of the domain (μ = 0, σ = 1 without normalisation);
  `pair_weights` [n, n] (batch weight on the pairs) replaces the uniform pair mean.
  """
  n = src.shape[0]
  diff = jnp.abs(normalised(pairwise_distances(src), *stats_src)
                 - normalised(pairwise_distances(fake), *stats_fake))
  upper = jnp.triu(jnp.ones((n, n), bool), k=1)
  w = jnp.where(upper, 1.0 if pair_weights is None else pair_weights, 0.0)
  return jnp.sum(w * diff) / jnp.sum(w)


def self_loss_per_sample(src, fake, stats_src, stats_fake):
  """|norm d(top, bottom) of src − that of its translation| per image."""
  return jnp.abs(normalised(self_distance(src), *stats_src)
                 - normalised(self_distance(fake), *stats_fake))


def distance_statistics(batches, kind: str):
  """(μ, σ) of the authors' estimator from batches [K, B, ...] (numpy, host-side).

  pairwise: over the K(K−1)/2 pairs of batches, d = mean |batch_k − batch_l| (aligned
  images); self: over the K batches, the mean top-bottom distance of the batch.
  """
  b = np.asarray(batches, np.float64)
  k = b.shape[0]
  if kind == "self":
    h = b.shape[2] // 2
    values = [np.mean(np.abs(b[i, :, :h] - b[i, :, h:2 * h])) for i in range(k)]
  else:
    values = [np.mean(np.abs(b[i] - b[j])) for i in range(k - 1) for j in range(i + 1, k)]
  values = np.asarray(values)
  return float(values.mean()), float(values.std())


class DistanceGAN(cyclegan.CycleGAN):
  """DistanceGAN (pairwise, self or both; with or without cycle; one-sided or not)."""

  name = "distancegan"

  def __init__(self, config: DistanceGANConfig):
    super().__init__(config)   # batch weight 'one_sided' builds Algorithm 2's single W
    if self.config.one_sided:
      self.directions = ("xy",)

  def module(self, part: str, name: str, axis_name=None):
    c = self.config
    kw = dict(axis_name=axis_name, **self.kw)
    if part == "G":
      out = c.channels_y if name == "G_xy" else c.channels_x
      return nets.cyclegan.EncoderDecoderGenerator(out_channels=out, dim=c.g_dim, **kw)
    return nets.cyclegan.DCGANDiscriminator(dim=c.d_dim, **kw)

  def network_names(self) -> dict:
    if self.config.one_sided:
      return {"G": ("G_xy",), "D": ("D_y",)}
    return super().network_names()

  def fake_sides(self) -> tuple:
    return ("y",) if self.config.one_sided else ("x", "y")

  def init_extras(self) -> dict:
    extras = super().init_extras()
    # (μ, σ) per domain and kind, set by `prepare` before the first step.
    # (Distinct arrays: a donated state may not hold one buffer twice.)
    extras["distance_stats"] = {f"{kind}_{side}": {"mu": jnp.zeros((), jnp.float32),
                                                    "sd": jnp.ones((), jnp.float32)}
                                for kind in ("pairwise", "self") for side in ("x", "y")}
    return extras

  # --- the data-dependent start (the loop calls it once, on a fresh run) ---

  @property
  def prepare_batches(self) -> int:
    c = self.config
    return c.distance_batches if c.normalize_distances else 0

  def prepare(self, state, batches):
    """The distance statistics from `batches` = {'x', 'y'}: [K, B, ...] images."""
    stats = {}
    for side in ("x", "y"):
      for kind in ("pairwise", "self"):
        mu, sd = distance_statistics(batches[side], kind)
        if not sd > 1e-6:
          from jdbw.errors import ConfigError
          raise ConfigError(f"--source_{side}: the {kind} distances of its first"
                            f" {len(batches[side])} batches do not vary (σ = {sd:g}); raise"
                            " --distance_batches or use --normalize_distances=false")
        stats[f"{kind}_{side}"] = {"mu": jnp.float32(mu), "sd": jnp.float32(sd)}
    return state.replace(extras={**state.extras, "distance_stats": stats})

  # --- the distance terms join the reconstruction terms ---

  def reconstruction_terms(self, run, x, y, fy, fx, w_x, w_y, state, axis_name) -> dict:
    c = self.config
    terms = {}
    if c.cycle_weight:
      mean = lambda v, w: (losses.weighted_sum(v, jax.lax.stop_gradient(w), axis_name)
                           if c.bw_reconstruction else losses.batch_mean(v, axis_name))
      terms["cycle"] = c.cycle_weight * (
          mean(cyclegan.l2_per_sample(run("G", "G_yx", fy), x), w_x)
          + mean(cyclegan.l2_per_sample(run("G", "G_xy", fx), y), w_y))
    stats = state.extras["distance_stats"]
    directions = [("x", "y", x, fy, w_x, c.distance_weight_x)]
    if not c.one_sided:
      directions.append(("y", "x", y, fx, w_y, c.distance_weight_y))
    gather = lambda a: parallel.all_gather(a, axis_name)
    st = lambda kind, side: ((stats[f"{kind}_{side}"]["mu"], stats[f"{kind}_{side}"]["sd"])
                             if c.normalize_distances else (0.0, 1.0))
    total = 0.0
    for src_side, tgt_side, src, fake, w, weight in directions:
      if not weight:
        continue
      w = jax.lax.stop_gradient(w)
      term = 0.0
      if c.distance in ("pairwise", "both"):
        pw = None
        if c.bw_reconstruction and self.bw.active:
          gw = gather(w)
          pw = gw[:, None] * gw[None, :]
        # Pairs over the global batch: every device computes the same global term.
        term = term + pairwise_loss(gather(src), gather(fake), st("pairwise", src_side),
                                    st("pairwise", tgt_side), pw)
      if c.distance in ("self", "both"):
        per = self_loss_per_sample(src, fake, st("self", src_side), st("self", tgt_side))
        term = term + (losses.weighted_sum(per, w, axis_name) if c.bw_reconstruction
                       else losses.batch_mean(per, axis_name))
      total = total + weight * term
    terms["distance"] = total
    return terms
