"""Critic terms, gradient penalties and per-sample GAN terms, as pure functions.

Per-sample weights ω enter every term; ω sums to one over the global batch, so each
term is a weighted mean. With `axis_name` set (shard_map / pmap), sums run over the
global batch and every returned loss is the global value (see `jdbw.parallel`).
No function here takes labels.
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp

from jdbw import parallel

GP_TYPES = ("points", "interpolates", "none")


def uniform_weights(n_local: int, axis_name: str | None = None):
  """ω = 1/m for every sample: the unweighted case."""
  return jnp.full((n_local,), 1.0 / parallel.global_size(n_local, axis_name), jnp.float32)


def _per_sample_mean(scores):
  return jnp.mean(scores.astype(jnp.float32).reshape(scores.shape[0], -1), axis=-1)


def _scales(outputs):
  return outputs if isinstance(outputs, (list, tuple)) else (outputs,)


def lsgan_per_sample(outputs, target: float):
  """Per sample, the mean over the score map of (D − target)², summed over scales (LSGAN):
  `outputs` is one critic's map [B, ...] (PatchGAN) or a list of maps, one per scale
  (MUNIT's multi-scale critic)."""
  return sum(_per_sample_mean(jnp.square(o.astype(jnp.float32) - target))
             for o in _scales(outputs))


def bce_per_sample(logits, target: float):
  """Per sample, the mean over the score map of the binary cross-entropy of the logits
  against `target` (1 real, 0 fake): the "vanilla" GAN loss (PyTorch's BCEWithLogitsLoss,
  pix2pix), −log σ(D) for target 1 and −log(1 − σ(D)) for 0, computed stably."""
  if target not in (0.0, 1.0):
    raise ValueError(f"bce target {target}; expected 0 or 1")
  sign = 1.0 if target == 1.0 else -1.0
  return _per_sample_mean(jax.nn.softplus(-sign * logits.astype(jnp.float32)))


def score_per_sample(outputs):
  """Per sample, the mean of the score map summed over scales: a marginal critic's score
  in batch weight's squared gap (`batch_weight.BatchWeight.marginal_w_loss`)."""
  return sum(_per_sample_mean(o) for o in _scales(outputs))


def weighted_sum(values, omega, axis_name: str | None = None):
  """Σ_i ω_i v_i over the global batch."""
  return parallel.psum(jnp.sum(omega * values.astype(jnp.float32)), axis_name)


def batch_mean(values, axis_name: str | None = None):
  """Mean of per-sample values over the global batch (the uniform-weight sum)."""
  return weighted_sum(values, uniform_weights(values.shape[0], axis_name), axis_name)


def critic_terms(d_minus, d_plus, omega_minus, omega_plus, axis_name: str | None = None):
  """Algorithm 1: L⁻ = Σ D(x_i, G_xy(x_i)) ω_i and L⁺ = Σ D(G_yx(y_i), y_i) ν_i.

  G minimises L⁻ − L⁺, D maximises it, W minimises (L⁻ − L⁺)².
  """
  return (weighted_sum(d_minus, omega_minus, axis_name),
          weighted_sum(d_plus, omega_plus, axis_name))


def _per_sample_sq_grad_norm(d_fn: Callable, *inputs):
  """‖∇_{inputs} D(inputs_i)‖² per sample (D is per-sample, so one VJP suffices)."""
  grads = jax.grad(lambda *a: jnp.sum(d_fn(*a)), argnums=tuple(range(len(inputs))))(*inputs)
  sq = lambda g: jnp.sum(jnp.square(g.astype(jnp.float32)).reshape(g.shape[0], -1), -1)
  return sum(sq(g) for g in grads)


def score_and_sq_grad_norm(d_fn: Callable, *inputs, has_aux: bool = False):
  """(D(inputs), ‖∇_inputs D(inputs)_i‖² per sample, aux) from one forward pass.

  The penalty at the training points differentiates the very forward that scores them,
  so the critic step needs no second forward per pair (`gradient_penalty_points` is
  the two-forward reference). `d_fn` returns (scores, aux) when `has_aux`.
  """
  if has_aux:
    out, pullback, aux = jax.vjp(d_fn, *inputs, has_aux=True)
  else:
    (out, pullback), aux = jax.vjp(d_fn, *inputs), None
  grads = pullback(jnp.ones_like(out))
  sq = lambda g: jnp.sum(jnp.square(g.astype(jnp.float32)).reshape(g.shape[0], -1), -1)
  return out, sum(sq(g) for g in grads), aux


def penalty_from_sq_norms(sq_norms, axis_name: str | None = None):
  """Mean over the global batch of per-sample squared gradient norms (Roth et al.)."""
  return parallel.pmean(jnp.mean(jnp.concatenate(sq_norms)), axis_name)


def gradient_penalty_points(d_fn: Callable, points, axis_name: str | None = None):
  """Roth et al. (2017): mean squared gradient norm of D at the training points.

  `points` is a sequence of input tuples for `d_fn`; for Algorithm 1 both sides'
  pairs (x, G_xy(x)) and (G_yx(y), y), generated halves held fixed.
  """
  sq = jnp.concatenate([_per_sample_sq_grad_norm(d_fn, *p) for p in points])
  return parallel.pmean(jnp.mean(sq), axis_name)


def gradient_penalty_interpolates(d_fn: Callable, points_a, points_b, eps,
                                  axis_name: str | None = None):
  """Gulrajani et al. (2017): E(‖∇D(x̂)‖ − 1)² at interpolates x̂ = ε a + (1 − ε) b.

  `eps` holds one U(0, 1) draw per sample, passed in so that it can be keyed by the
  global sample index (identical on any number of devices).
  """
  e = eps.reshape((-1,) + (1,) * (points_a[0].ndim - 1)).astype(points_a[0].dtype)
  hat = [e * a + (1 - e) * b for a, b in zip(points_a, points_b)]
  norm = jnp.sqrt(_per_sample_sq_grad_norm(d_fn, *hat) + 1e-12)
  return parallel.pmean(jnp.mean(jnp.square(norm - 1.0)), axis_name)
