"""Analytic FLOP counts (jdbw.flops) against hand counts."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import pytest

from jdbw import flops
from jdbw.methods import jd


def _conv(transpose=False):
  mod = (nn.ConvTranspose(5, (4, 4), (2, 2), padding=((2, 2), (2, 2))) if transpose
         else nn.Conv(5, (4, 4), 2, padding=((1, 1), (1, 1))))
  x = jnp.ones((3, 8, 8, 2))
  return mod, mod.init(jax.random.PRNGKey(0), x), x


@pytest.mark.parametrize("transpose", [False, True])
def test_conv_forward_and_gradients(transpose):
  mod, v, x = _conv(transpose)
  # Strided conv: 3 x 4x4 outputs; transposed: each of 3 x 8x8 inputs spreads over 4x4 taps.
  fwd = 2 * 3 * (8 * 8 if transpose else 4 * 4) * 16 * 2 * 5
  assert flops.total(flops.count(mod.apply, v, x)) == fwd
  # Backward: the input gradient and the kernel gradient each cost one forward.
  grad = jax.grad(lambda v, x: jnp.sum(mod.apply(v, x)), argnums=(0, 1))
  assert flops.total(flops.count(grad, v, x)) == 3 * fwd
  only_params = jax.grad(lambda v: jnp.sum(jnp.sin(mod.apply(v, x))))
  assert flops.total(flops.count(only_params, v)) == 2 * fwd


def test_dense_and_layer_keys():
  mod = nn.Dense(7)
  x = jnp.ones((4, 3))
  v = mod.init(jax.random.PRNGKey(0), x)
  c = flops.count(mod.apply, v, x)
  assert flops.total(c) == 2 * 4 * 3 * 7
  assert flops.by_network(c) == {"Dense": 2 * 4 * 3 * 7}


def _jd_counts(batch, d_steps):
  method = jd.JD(jd.JDConfig(g_features=8, d_features=4, w_features=4, d_steps=d_steps,
                             conv_impl="xla"))
  method.unroll_d_steps = False   # critic steps in a scan: jdbw.flops tags them 'scan'
  state = jax.eval_shape(method.init_state, jax.random.PRNGKey(0))
  images = {k: jax.ShapeDtypeStruct((1 + d_steps, batch, 32, 32, 1), jnp.float32) for k in "xy"}
  return flops.count(method.iteration, state, images)


def test_iteration_count_scales_with_batch_and_critic_steps():
  split = lambda c: (sum(v for (t, _), v in c.items() if t != "scan"),
                     sum(v for (t, _), v in c.items() if t == "scan"))
  g1, d1 = split(_jd_counts(4, 1))
  g2, d2 = split(_jd_counts(4, 2))
  assert g1 == g2 and d2 == 2 * d1          # Scan bodies count once per critic step.
  g8, d8 = split(_jd_counts(8, 1))
  # Linear in the batch up to the batch-independent spectral-norm power iterations.
  assert abs(g8 / g1 - 2) < 0.01 and abs(d8 / d1 - 2) < 0.01
  assert set(flops.by_network(_jd_counts(4, 1))) == {
      "JointDiscriminator", "Generator", "DCGANCritic"}
