"""Convolution implementations (jdbw.nets.layers) against flax.linen's, and the bf16 option."""

import dataclasses

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import helpers

from jdbw import data, nets
from jdbw.nets import layers
from jdbw.methods import jd

CONVS = [  # (transposed, kernel, stride, padding), every form the models use and more.
    (False, 4, 2, ((1, 1), (1, 1))), (False, 3, 1, ((1, 1), (1, 1))), (False, 1, 1, "VALID"),
    (False, 7, 1, "VALID"), (False, 3, 2, "SAME"), (False, 5, 1, 2), (False, 4, 2, "VALID"),
    (True, 4, 2, ((2, 2), (2, 2))), (True, 1, 1, "VALID"), (True, 3, 2, "SAME"),
    (True, 4, 2, "SAME"), (True, 3, 1, "VALID"),
]


def _gp_grads(apply_fn, variables, x):
  """Parameter gradient of ‖∇_x Σ sin(f(x))‖²: forward, backward and double backward."""
  def penalty(v):
    g = jax.grad(lambda x: jnp.sum(jnp.sin(apply_fn(v, x))))(x)
    return jnp.sum(jnp.square(g))
  return jax.grad(penalty)(variables)


@pytest.mark.parametrize("impl", ["xla", "im2col"])
@pytest.mark.parametrize("transposed,k,s,pad", CONVS)
@pytest.mark.parametrize("hw", [(9, 10), (8, 8)])  # (8, 8): im2col's space-to-depth path.
def test_conv_matches_flax(impl, transposed, k, s, pad, hw):
  x = jnp.asarray(np.random.default_rng(0).normal(size=(2, *hw, 3)), jnp.float32)
  if transposed:
    ref = nn.ConvTranspose(5, (k, k), (s, s), padding=pad)
    ours = layers.conv_transpose(5, (k, k), (s, s), pad, impl=impl)
  else:
    ref = nn.Conv(5, (k, k), s, padding=pad)
    ours = layers.Conv(5, (k, k), s, pad, impl=impl)
  v = ref.init(jax.random.PRNGKey(0), x)
  v = jax.tree.map(lambda a: a + 0.1, v)  # Non-zero bias too.
  # Same parameter tree, so checkpoints move between implementations.
  chex.assert_trees_all_equal_shapes(ours.init(jax.random.PRNGKey(0), x), v)
  want = ref.apply(v, x)
  got = ours.apply(v, x)
  chex.assert_shape(got, want.shape)
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
  g_want, g_got = _gp_grads(ref.apply, v, x), _gp_grads(ours.apply, v, x)
  for a, b in zip(jax.tree.leaves(g_got), jax.tree.leaves(g_want)):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4 * float(jnp.max(jnp.abs(b))))


def test_resolve_impl():
  cpu = jax.default_backend() == "cpu"
  assert layers.resolve_impl("auto", (4, 4), (2, 2)) == ("im2col" if cpu else "xla")
  assert layers.resolve_impl("auto", (1, 1), (1, 1)) == ("im2col" if cpu else "xla")
  assert layers.resolve_impl("auto", (3, 3), (1, 1)) == "xla"
  assert layers.resolve_impl("auto", (4, 4), (2, 2), transpose=True) == "xla"
  assert layers.resolve_impl("im2col", (4, 4), (2, 2), transpose=True) == "im2col"
  with pytest.raises(ValueError, match="conv impl"):
    layers.resolve_impl("cudnn")


def _models():
  x, z = jnp.ones((2, 32, 32, 1)), jnp.ones((2, 8))
  return [
      (lambda **kw: nets.TinyGenerator(**kw), (x, z)),
      (lambda **kw: nets.TinyJointDiscriminator(**kw), (x, x)),
      (lambda **kw: nets.TinyCritic(**kw), (x,)),
  ]


@pytest.mark.parametrize("index", range(3))
def test_models_agree_across_impls(index):
  make, inputs = _models()[index]
  rng = np.random.default_rng(index)
  inputs = tuple(jnp.asarray(rng.uniform(-1, 1, a.shape), jnp.float32) for a in inputs)
  v = nets.init(make(impl="xla"), jax.random.PRNGKey(1), *inputs)
  a = nets.apply(make(impl="xla"), v, *inputs)
  b = nets.apply(make(impl="im2col"), v, *inputs)
  np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def test_munit_nets_agree_across_impls():
  x = jnp.asarray(np.random.default_rng(0).uniform(-1, 1, (2, 32, 32, 1)), jnp.float32)
  s = jnp.ones((2, 8))
  for make, args in ((nets.munit.TinyAdaINGenerator, (x, s)), (nets.munit.TinyMsImageDis, (x,))):
    v = make(impl="xla").init(jax.random.PRNGKey(0), *args)
    a, b = (make(impl=i).apply(v, *args) for i in ("xla", "im2col"))
    chex.assert_trees_all_close(a, b, rtol=1e-4, atol=1e-5)


def test_bfloat16_keeps_float32_params_and_outputs():
  x, z = jnp.asarray(np.random.default_rng(0).uniform(-1, 1, (4, 32, 32, 1)), jnp.float32), \
      jnp.zeros((4, 8))
  v32 = nets.init(nets.TinyGenerator(), jax.random.PRNGKey(0), x, z)
  g16 = nets.TinyGenerator(dtype=jnp.bfloat16)
  v16 = nets.init(g16, jax.random.PRNGKey(0), x, z)
  assert {a.dtype for a in jax.tree.leaves(v16)} == {jnp.dtype(jnp.float32)}
  out16, out32 = nets.apply(g16, v32, x, z), nets.apply(nets.TinyGenerator(), v32, x, z)
  assert out16.dtype == jnp.float32
  # bf16 has 8 mantissa bits: close, not equal.
  assert 0 < float(jnp.max(jnp.abs(out16 - out32))) < 0.05


def _digit_batches(steps, batch, d_steps):
  specs = {"x": data.DomainSpec(source="digits", name="x"),
           "y": data.DomainSpec(source="digits", classes="0:0.5", transform="sr", name="y")}
  domains = {k: data.load_domain(s) for k, s in specs.items()}
  it = data.make_batches(domains, batch, seed=0, stack=(1 + d_steps,), device_count=1)
  return [{k: jnp.asarray(v["image"]) for k, v in next(it).items()} for _ in range(steps)]


def _trajectory(config, state, batches):
  """The iteration's metrics over `batches`, compiled at XLA's default optimisation level
  (2): the suite's -O0 (conftest.py) makes these wider steps about 6 times slower."""
  step = helpers.optimised(jax.jit(jd.JD(config).iteration))
  out = []
  for b in batches:
    state, metrics, _ = step(state, b)
    out.append(metrics)
  return {k: np.array([float(m[k]) for m in out]) for k in out[0]}


def test_bfloat16_loss_trajectory_stays_close_to_float32():
  """60 JD-BW iterations on real digits from the same parameters: bf16 compute tracks
  float32's losses. Measured (2026-12-06, 2 cores): the 20-step means differ by 0.013-0.018
  of the losses' scale (asserted: 0.1); about 35 s per dtype."""
  steps = 60
  base = jd.JDConfig(g_features=8, d_features=4, w_features=4, d_steps=1, lr=2e-4, bw_full=150)
  batches = _digit_batches(steps, 16, base.d_steps)
  # The parameters are float32 whatever the compute dtype: one initial state for both.
  state = jax.jit(jd.JD(base).init_state)(jax.random.PRNGKey(0))
  f32 = _trajectory(base, state, batches)
  bf16 = _trajectory(dataclasses.replace(base, compute_dtype="bfloat16"), state, batches)
  for k in ("g/gap", "d/gap", "d/gp"):
    assert np.all(np.isfinite(bf16[k])), k
    # Chaotic GAN dynamics amplify rounding, so compare 20-step means, not steps.
    w32, w16 = (a.reshape(-1, 20).mean(1) for a in (f32[k], bf16[k]))
    scale = np.abs(f32[k]).mean() + 1e-3
    assert np.max(np.abs(w32 - w16)) < 0.1 * scale, (k, w32, w16)
  assert not np.array_equal(f32["d/gp"], bf16["d/gp"])  # The option does change the compute.
