"""Critic terms, gradient penalties (vs finite differences), per-sample GAN terms, W losses."""

import chex
import jax
import jax.numpy as jnp
import numpy as np

from jdbw import losses, nets


def test_critic_terms_weighted_and_unweighted():
  rng = np.random.default_rng(0)
  dm, dp = rng.normal(size=6), rng.normal(size=6)
  w = rng.uniform(size=6)
  w /= w.sum()
  l_minus, l_plus = losses.critic_terms(jnp.asarray(dm), jnp.asarray(dp), jnp.asarray(w),
                                        jnp.full(6, 1 / 6))
  np.testing.assert_allclose(float(l_minus), np.sum(w * dm), rtol=1e-6)
  np.testing.assert_allclose(float(l_plus), dp.mean(), rtol=1e-6)


def _tiny_d():
  net = nets.DCGANCritic(features=2, num_layers=2)
  x = jnp.zeros((3, 8, 8, 1))
  params = nets.init(net, jax.random.PRNGKey(0), x, x)
  return lambda a, b: net.apply(params, a, b) ** 3  # Non-linear in the inputs.


def test_gradient_penalty_points_matches_finite_differences():
  with jax.enable_x64(True):
    d_fn = _tiny_d()
    to64 = lambda t: jax.tree.map(lambda a: a.astype(jnp.float64), t)
    rng = jax.random.split(jax.random.PRNGKey(1), 4)
    pairs = [(jax.random.normal(rng[0], (3, 8, 8, 1), jnp.float64),
              jax.random.normal(rng[1], (3, 8, 8, 1), jnp.float64)),
             (jax.random.normal(rng[2], (3, 8, 8, 1), jnp.float64),
              jax.random.normal(rng[3], (3, 8, 8, 1), jnp.float64))]
    d64 = lambda a, b: d_fn(a, b).astype(jnp.float64)
    gp = float(losses.gradient_penalty_points(d64, to64(pairs)))
    eps = 1e-5
    sq = []
    for x, y in pairs:
      z = np.concatenate([np.asarray(x).reshape(3, -1), np.asarray(y).reshape(3, -1)], 1)
      grads = np.zeros_like(z)
      for j in range(z.shape[1]):
        e = np.zeros_like(z)
        e[:, j] = eps
        f = lambda zz: np.asarray(d64(jnp.asarray(zz[:, :64].reshape(3, 8, 8, 1)),
                                      jnp.asarray(zz[:, 64:].reshape(3, 8, 8, 1))))
        grads[:, j] = (f(z + e) - f(z - e)) / (2 * eps)
      sq.append((grads ** 2).sum(1))
    np.testing.assert_allclose(gp, np.mean(np.concatenate(sq)), rtol=1e-6)
    assert gp > 0


def test_shared_forward_penalty_equals_two_forward_reference():
  """score_and_sq_grad_norm: same scores, penalty and parameter gradient as the reference."""
  net = nets.DCGANCritic(features=2, num_layers=2)
  rng = np.random.default_rng(1)
  a, b = (jnp.asarray(rng.uniform(-1, 1, (3, 8, 8, 1)), jnp.float32) for _ in range(2))
  params = nets.init(net, jax.random.PRNGKey(0), a, b)
  d = lambda p: lambda *inp: jnp.tanh(net.apply(p, *inp)) ** 3

  def shared(p):
    out, sq, _ = losses.score_and_sq_grad_norm(d(p), a, b)
    return jnp.mean(out) + 10 * losses.penalty_from_sq_norms([sq])

  def reference(p):
    return jnp.mean(d(p)(a, b)) + 10 * losses.gradient_penalty_points(d(p), [(a, b)])

  chex.assert_trees_all_close(shared(params), reference(params), rtol=1e-6)
  chex.assert_trees_all_close(jax.grad(shared)(params), jax.grad(reference)(params),
                              rtol=1e-5, atol=1e-7)
  assert float(jnp.abs(jax.tree.leaves(jax.grad(shared)(params))[0]).sum()) > 0


def test_gradient_penalty_interpolates_on_a_linear_critic():
  a = jax.random.normal(jax.random.PRNGKey(0), (4, 4, 1))
  b = jax.random.normal(jax.random.PRNGKey(1), (4, 4, 1))
  d_fn = lambda x, y: jnp.sum(x * a, (1, 2, 3)) + jnp.sum(y * b, (1, 2, 3))
  xs = [jax.random.normal(jax.random.PRNGKey(i), (5, 4, 4, 1)) for i in range(4)]
  eps = jax.random.uniform(jax.random.PRNGKey(9), (5,))
  gp = losses.gradient_penalty_interpolates(d_fn, (xs[0], xs[1]), (xs[2], xs[3]), eps)
  norm = float(jnp.sqrt(jnp.sum(a ** 2) + jnp.sum(b ** 2)))
  np.testing.assert_allclose(float(gp), (norm - 1.0) ** 2, rtol=1e-5)


def test_lsgan_and_score_per_sample_against_numpy():
  """One PatchGAN map [B, H, W, 1] or a list of multi-scale maps [B, H, W]: per sample,
  the map mean of (D − t)² (LSGAN) or of D, summed over scales."""
  rng = np.random.default_rng(1)
  patch = rng.normal(size=(3, 4, 4, 1)).astype(np.float32)
  scales = [rng.normal(size=(3, 8, 8)).astype(np.float32),
            rng.normal(size=(3, 4, 4)).astype(np.float32)]
  for t in (0.0, 1.0):
    np.testing.assert_allclose(losses.lsgan_per_sample(jnp.asarray(patch), t),
                               ((patch - t) ** 2).reshape(3, -1).mean(-1), rtol=1e-6)
    np.testing.assert_allclose(losses.lsgan_per_sample([jnp.asarray(o) for o in scales], t),
                               sum(((o - t) ** 2).mean((1, 2)) for o in scales), rtol=1e-6)
  np.testing.assert_allclose(losses.score_per_sample(jnp.asarray(patch)),
                             patch.reshape(3, -1).mean(-1), rtol=1e-6)
  np.testing.assert_allclose(losses.score_per_sample([jnp.asarray(o) for o in scales]),
                             sum(o.mean((1, 2)) for o in scales), rtol=1e-6)


def test_w_losses_against_numpy_gradient_through_weights_only():
  """Batch weight's two W losses: the joint critic's (L⁻ − L⁺)² and the marginal critics'
  Σ (Σ ω D(fake) − mean D(real))²; the critic scores carry no gradient."""
  from jdbw.batch_weight import BatchWeight
  rng = np.random.default_rng(2)
  dm, dp, fake, real = (jnp.asarray(rng.normal(size=6), jnp.float32) for _ in range(4))
  wx, wy = (jnp.asarray(rng.dirichlet(np.ones(6)), jnp.float32) for _ in range(2))
  joint = BatchWeight.joint_w_loss(dm, dp, wx, wy)
  np.testing.assert_allclose(joint, (np.dot(dm, wx) - np.dot(dp, wy)) ** 2, rtol=1e-5)
  marginal = BatchWeight.marginal_w_loss((fake, wx, real), (dp, wy, dm))
  np.testing.assert_allclose(marginal, (np.dot(fake, wx) - np.mean(real)) ** 2
                             + (np.dot(dp, wy) - np.mean(dm)) ** 2, rtol=1e-5)
  g_scores = jax.grad(lambda a, b: BatchWeight.joint_w_loss(a, b, wx, wy), (0, 1))(dm, dp)
  g_fake = jax.grad(lambda f: BatchWeight.marginal_w_loss((f, wx, real)))(fake)
  for g in (*g_scores, g_fake):
    np.testing.assert_array_equal(g, 0.0)
  g_w = jax.grad(lambda w: BatchWeight.marginal_w_loss((fake, w, real)))(wx)
  np.testing.assert_allclose(g_w, 2 * (np.dot(fake, wx) - np.mean(real)) * np.asarray(fake),
                             rtol=1e-5)


