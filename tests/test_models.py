"""Networks (Tables 1-2, DCGAN critics): shapes, ranges, spectral norm."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from absl.testing import parameterized
from flax import traverse_util

from jdbw import nets


class GeneratorTest(chex.TestCase):

  @chex.variants(with_jit=True, without_jit=True)
  @parameterized.parameters(
      (nets.GeneratorMNIST, 8, 1), (nets.GeneratorMNIST, 8, 3),
      (nets.GeneratorSVHN, 16, 3), (nets.GeneratorSVHN, 16, 1))
  def test_shapes_and_range(self, gen, noise_dim, channels):
    g = gen(out_channels=channels)
    rng_x, rng_z, rng_p = jax.random.split(jax.random.PRNGKey(0), 3)
    x = 3.0 * jax.random.normal(rng_x, (3, 32, 32, channels))
    z = nets.sample_noise(rng_z, 3, noise_dim)
    variables = nets.init(g, rng_p, x, z)
    out = self.variant(lambda v, x, z: nets.apply(g, v, x, z))(variables, x, z)
    chex.assert_shape(out, (3, 32, 32, channels))
    chex.assert_tree_all_finite(out)
    assert float(jnp.max(jnp.abs(out))) <= 1.0
    assert float(jnp.std(out)) > 0.0

  def test_noise_matters_and_batch_independence(self):
    g = nets.TinyGenerator(out_channels=1)
    x = jax.random.normal(jax.random.PRNGKey(1), (5, 32, 32, 1))
    z = nets.sample_noise(jax.random.PRNGKey(2), 5, 8)
    v = nets.init(g, jax.random.PRNGKey(0), x, z)
    full = nets.apply(g, v, x, z)
    parts = jnp.concatenate([nets.apply(g, v, x[:2], z[:2]), nets.apply(g, v, x[2:], z[2:])])
    np.testing.assert_allclose(full, parts, atol=1e-5)
    other = nets.apply(g, v, x, nets.sample_noise(jax.random.PRNGKey(3), 5, 8))
    assert float(jnp.max(jnp.abs(full - other))) > 1e-4

  def test_noise_is_uniform(self):
    z = nets.sample_noise(jax.random.PRNGKey(0), 4096, 8)
    chex.assert_shape(z, (4096, 8))
    assert float(z.min()) >= -1 and float(z.max()) <= 1
    np.testing.assert_allclose(float(jnp.var(z)), 1 / 3, rtol=0.05)


class DiscriminatorTest(chex.TestCase):

  @parameterized.parameters(1, 3)
  def test_table1_shapes(self, channels):
    d = nets.JointDiscriminator()
    x = jnp.ones((2, 32, 32, channels))
    v = nets.init(d, jax.random.PRNGKey(0), x, x)
    out, state = d.apply(v, x, x, update_stats=False, mutable=["intermediates"])
    chex.assert_shape(out, (2,))
    inter = {k: val[0] for k, val in state["intermediates"].items()}
    chex.assert_shape(inter["concat1"], (2, 16, 16, 32 + 64 + 32))
    chex.assert_shape(inter["concat2"], (2, 8, 8, 64 + 128 + 64))
    chex.assert_shape(inter["res2"], (2, 8, 8, 128))
    chex.assert_shape(inter["concat3"], (2, 4, 4, 128 + 256 + 128))
    chex.assert_shape(inter["fc_in"], (2, 1024))

  @parameterized.parameters((1, 1), (3, 1), (1, 2))
  def test_dcgan_critic(self, channels, n_inputs):
    w = nets.WeightNet()
    imgs = [jnp.ones((5, 32, 32, channels))] * n_inputs
    v = nets.init(w, jax.random.PRNGKey(0), *imgs)
    chex.assert_shape(nets.apply(w, v, *imgs), (5,))
    assert nets.SPECTRAL not in v  # Weight nets: plain DCGAN.
    kernels = [k for k in traverse_util.flatten_dict(v["params"]) if k[-1] == "kernel"]
    assert len(kernels) == 5  # Four convs + linear.
    m = nets.MarginalDiscriminator()
    assert nets.SPECTRAL in nets.init(m, jax.random.PRNGKey(0), *imgs)


def _sn_pairs(variables):
  """(raw kernel, sigma) for every spectrally normalised layer."""
  params = traverse_util.flatten_dict(variables["params"], sep="/")
  spectral = traverse_util.flatten_dict(variables[nets.SPECTRAL], sep="/")
  pairs = []
  for path, sigma in spectral.items():
    if path.endswith("/sigma"):
      layer = path[:-len("/sn/layer/kernel/sigma")]
      pairs.append((params[f"{layer}/layer/kernel"], sigma))
  return pairs


@pytest.mark.parametrize("kind", ["generator", "discriminator"])
def test_spectral_norm_matches_svd(kind):
  rng = jax.random.PRNGKey(0)
  x = jax.random.normal(rng, (2, 32, 32, 1))
  if kind == "generator":
    net, inputs = nets.TinyGenerator(out_channels=1), (x, jnp.zeros((2, 8)))
  else:
    net, inputs = nets.TinyJointDiscriminator(), (x, x)
  v = nets.init(net, rng, *inputs)
  step = jax.jit(lambda v: nets.apply(net, v, *inputs, update_stats=True)[1])
  for _ in range(60):
    v = step(v)
  pairs = _sn_pairs(v)
  assert len(pairs) >= (10 if kind == "generator" else 12)
  for kernel, sigma in pairs:
    mat = np.asarray(kernel, np.float64).reshape(-1, kernel.shape[-1])
    top = np.linalg.svd(mat, compute_uv=False)[0]
    np.testing.assert_allclose(top / float(sigma), 1.0, atol=1e-2)


def test_eval_mode_leaves_spectral_state_alone():
  net = nets.TinyJointDiscriminator()
  x = jnp.ones((2, 32, 32, 1))
  v = nets.init(net, jax.random.PRNGKey(0), x, x)
  _, updated = nets.apply(net, v, x, x, update_stats=True)
  assert not all(np.allclose(a, b) for a, b in zip(jax.tree.leaves(v[nets.SPECTRAL]),
                                                   jax.tree.leaves(updated[nets.SPECTRAL])))
  with pytest.raises(Exception):  # Not mutable in eval mode: no silent update.
    net.apply(v, x, x, update_stats=True)


class HiResTest(chex.TestCase):
  """128x128 networks (§4.2/4.4): shapes, range, noise and per-sample independence."""

  @chex.variants(with_jit=True, without_jit=True)
  def test_generator(self):
    g = nets.TinyGeneratorHiRes(out_channels=3)
    x = 3.0 * jax.random.normal(jax.random.PRNGKey(1), (3, 128, 128, 3))
    z = nets.sample_noise(jax.random.PRNGKey(2), 3, 16)
    v = nets.init(g, jax.random.PRNGKey(0), x, z)
    run = self.variant(lambda v, x, z: nets.apply(g, v, x, z))
    out = run(v, x, z)
    chex.assert_shape(out, (3, 128, 128, 3))
    chex.assert_tree_all_finite(out)
    assert float(jnp.max(jnp.abs(out))) <= 1.0
    parts = jnp.concatenate([run(v, x[:1], z[:1]), run(v, x[1:], z[1:])])
    np.testing.assert_allclose(out, parts, atol=1e-5)
    other = run(v, x, nets.sample_noise(jax.random.PRNGKey(3), 3, 16))
    assert float(jnp.max(jnp.abs(out - other))) > 1e-4
    # MUNIT's layout: 7x7, two 4x4/2 downs, z mix (1x1), 2 x n_res ResBlocks of two
    # 3x3 convs, two 5x5 ups, 7x7 out; every conv spectrally normalised.
    kernels = [k.shape for k in jax.tree.leaves(v["params"]) if k.ndim == 4]
    assert [s[0] for s in kernels].count(3) == 2 * 2 * g.n_res
    assert sorted({s[0] for s in kernels}) == [1, 3, 4, 5, 7]
    assert len(_sn_pairs(v)) == len(kernels)

  def test_joint_discriminator_and_weight_net(self):
    d = nets.JointDiscriminator128(features=4)
    x = jnp.ones((2, 128, 128, 3))
    v = nets.init(d, jax.random.PRNGKey(0), x, x)
    out, state = d.apply(v, x, x, update_stats=False, mutable=["intermediates"])
    chex.assert_shape(out, (2,))
    inter = {k: val[0] for k, val in state["intermediates"].items()}
    chex.assert_shape(inter["concat1"], (2, 64, 64, 16))
    chex.assert_shape(inter["concat4"], (2, 8, 8, 4 * 4 * 8))
    chex.assert_shape(inter["res4"], (2, 8, 8, 2 * 4 * 8))
    chex.assert_shape(inter["concat5"], (2, 4, 4, 4 * 4 * 8))
    chex.assert_shape(inter["fc_in"], (2, 2 * 2 * 8 * 4))
    w = nets.WeightNet128(features=4, max_features=16)
    vw = nets.init(w, jax.random.PRNGKey(0), x)
    chex.assert_shape(nets.apply(w, vw, x), (2,))
    widths = [k.shape[-1] for k in jax.tree.leaves(vw["params"]) if k.ndim == 4]
    assert widths == [4, 8, 16, 16, 16, 16]
