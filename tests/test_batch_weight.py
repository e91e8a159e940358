"""Batch weight: schemes, normalisations, clipping, global-batch semantics."""

import functools
import inspect

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from absl.testing import parameterized
from jax.sharding import PartitionSpec as P

from jdbw import batch_weight, losses, nets, parallel

AX = parallel.BATCH_AXIS


def _logits(n=16, scale=3.0, seed=0):
  return scale * jax.random.normal(jax.random.PRNGKey(seed), (n,))


class NormalisationTest(chex.TestCase):

  @chex.variants(with_jit=True, without_jit=True)
  def test_sigmoid(self):
    a = [_logits(seed=0), _logits(seed=1)]
    omega = self.variant(lambda a: batch_weight.combined_weights(a, "sigmoid"))(a)
    w = np.asarray(jax.nn.sigmoid(a[0]) + jax.nn.sigmoid(a[1])) / 2
    assert np.all((w > 0) & (w < 1))
    m = 16
    np.testing.assert_allclose(m * omega, 0.5 * (1 + w), rtol=1e-6)
    assert np.all((m * omega >= 0.5) & (m * omega <= 1.0))

  @chex.variants(with_jit=True, without_jit=True)
  @parameterized.parameters(0.25, 1.0, 3.0)
  def test_softmax_and_clip_ratio(self, t):
    a = _logits(scale=10.0)
    w = self.variant(batch_weight.softmax_weights)(a, t)
    assert np.all(w > 0)
    np.testing.assert_allclose(float(w.sum()), 1.0, rtol=1e-6)
    ratio = float(w.max() / w.min())
    assert ratio <= np.exp(2 * t) * (1 + 1e-5)
    assert ratio >= np.exp(2 * t) * 0.999  # Logits this spread hit both clip bounds.
    centred = np.clip(np.asarray(a) - np.mean(a), -t, t)
    ref = np.exp(centred) / np.exp(centred).sum()
    np.testing.assert_allclose(w, ref, rtol=1e-5)

  def test_combined_softmax_composite(self):
    a1, a2 = _logits(seed=0), _logits(seed=1)
    omega = batch_weight.combined_weights([a1, a2], "softmax", t=1.0)
    sm = lambda a: batch_weight.softmax_weights(a, 1.0)
    np.testing.assert_allclose(omega, 0.25 * (2 / 16 + sm(a1) + sm(a2)), rtol=1e-6)
    np.testing.assert_allclose(float(omega.sum()), 1.0, rtol=1e-6)
    uni = batch_weight.combined_weights([a1, a2], "softmax", t=1.0, uniform=True)
    np.testing.assert_allclose(uni, np.full(16, 1 / 16))

  def test_clip_schedule(self):
    t = lambda s: float(batch_weight.clip_value(s, bw_start=100, bw_full=1100))
    assert t(0) == t(100) == pytest.approx(0.25)
    assert t(600) == pytest.approx(0.75)
    assert t(1100) == pytest.approx(1.25)

  def test_bad_names(self):
    with pytest.raises(ValueError, match="normalisation"):
      batch_weight.combined_weights([_logits()], "tanh")
    with pytest.raises(ValueError, match="scheme"):
      batch_weight.weight_logits("pairs", None, 0, 0, 0, 0)


def test_schemes_call_the_right_networks_with_the_right_signs():
  calls = []

  def W(name, *imgs):
    calls.append((name, len(imgs)))
    return jnp.full((2,), {"W": 1.0, "W_x": 2.0, "W_y": 3.0}[name]) * sum(
        float(i) for i in imgs)

  x, gx, gy, y = 1.0, 10.0, 100.0, 1000.0
  ax, ay = batch_weight.weight_logits("composite", W, x, gx, gy, y)
  np.testing.assert_allclose([float(a[0]) for a in ax], [2 * x, -3 * gx])
  np.testing.assert_allclose([float(a[0]) for a in ay], [-2 * gy, 3 * y])
  ax, ay = batch_weight.weight_logits("single", W, x, gx, gy, y)
  np.testing.assert_allclose([float(ax[0][0]), float(ay[0][0])], [x, -gy])
  ax, ay = batch_weight.weight_logits("concat", W, x, gx, gy, y)
  np.testing.assert_allclose([float(ax[0][0]), float(ay[0][0])], [x + gx, -(gy + y)])
  assert ("W", 2) in calls


def _two_device_runs(fn, *args):
  """fn(*args, axis_name) under shard_map and pmap over 2 devices, batch split on axis 0."""
  mesh = parallel.make_mesh()
  sm = jax.jit(jax.shard_map(functools.partial(fn, axis_name=AX), mesh=mesh,
                             in_specs=P(AX), out_specs=P(AX), check_vma=False))(*args)
  split = [parallel.to_pmap(np.asarray(a)) for a in args]
  pm = jax.pmap(functools.partial(fn, axis_name=AX), axis_name=AX)(*split)
  return np.asarray(sm), np.asarray(pm).reshape(np.asarray(sm).shape)


def test_one_sided_softmax_over_named_axis_equals_single_device():
  assert jax.device_count() == 2
  a = _logits(n=12, scale=4.0)
  ref = batch_weight.one_sided_weights(a, t=1.0)
  sm, pm = _two_device_runs(lambda a, axis_name: batch_weight.one_sided_weights(
      a, t=1.0, axis_name=axis_name), a)
  np.testing.assert_allclose(sm, ref, rtol=1e-6)
  np.testing.assert_allclose(pm, ref, rtol=1e-6)
  # Per-device softmax would differ: the normalisation really is global.
  local = np.concatenate([batch_weight.one_sided_weights(a[:6], t=1.0),
                          batch_weight.one_sided_weights(a[6:], t=1.0)])
  assert not np.allclose(local, ref)


@pytest.mark.parametrize("norm", ["sigmoid", "softmax"])
def test_combined_weights_over_named_axis(norm):
  a1, a2 = _logits(n=8, seed=3), _logits(n=8, seed=4)
  ref = batch_weight.combined_weights([a1, a2], norm, t=0.5)
  sm, pm = _two_device_runs(lambda a1, a2, axis_name: batch_weight.combined_weights(
      [a1, a2], norm, t=0.5, axis_name=axis_name), a1, a2)
  np.testing.assert_allclose(sm, ref, rtol=1e-6)
  np.testing.assert_allclose(pm, ref, rtol=1e-6)


def test_gradient_through_global_softmax_matches_single_device():
  """The data-parallel convention: global loss per device, pmean of gradients."""
  net = nets.TinyCritic()
  x = jax.random.normal(jax.random.PRNGKey(0), (8, 32, 32, 1))
  d = jax.random.normal(jax.random.PRNGKey(1), (8,))
  params = nets.init(net, jax.random.PRNGKey(2), x)

  def loss(params, x, d, axis_name=None):
    w = batch_weight.combined_weights([net.apply(params, x)], "softmax", t=2.0,
                                      axis_name=axis_name)
    l_minus = losses.weighted_sum(d, w, axis_name)
    return jnp.square(l_minus - 0.3)  # Non-linear in the global sum, like W's loss.

  ref = jax.grad(loss)(params, x, d)

  def per_device(params, x, d, axis_name):
    return jax.lax.pmean(jax.grad(loss)(params, x, d, axis_name), axis_name)

  mesh = parallel.make_mesh()
  sm = jax.jit(jax.shard_map(functools.partial(per_device, axis_name=AX), mesh=mesh,
                             in_specs=(P(), P(AX), P(AX)), out_specs=P(),
                             check_vma=False))(params, x, d)
  pm = jax.pmap(functools.partial(per_device, axis_name=AX), axis_name=AX,
                in_axes=(None, 0, 0))(params, parallel.to_pmap(x), parallel.to_pmap(d))
  chex.assert_trees_all_close(sm, ref, rtol=1e-4, atol=1e-7)
  chex.assert_trees_all_close(jax.tree.map(lambda g: g[0], pm), ref, rtol=1e-4, atol=1e-7)


@pytest.mark.parametrize("module", [batch_weight, losses, nets.blocks, nets.jd, nets.munit])
def test_labels_appear_in_no_signature(module):
  for name, fn in inspect.getmembers(module, callable):
    if getattr(fn, "__module__", None) != module.__name__:
      continue
    targets = [fn.__call__] if inspect.isclass(fn) else [fn]
    for target in targets:
      try:
        params = inspect.signature(target).parameters
      except (TypeError, ValueError):
        continue
      assert not any("label" in p.lower() for p in params), (name, list(params))
