"""IrwGAN: its reweighting networks, the weighted CycleGAN losses against numpy, L_β's
pull (toward the images whose translations fool D, toward uniform by the norm), one
device against two, a tiny run on digits that resumes exactly and evaluates its weights,
and refusals in one line."""


import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import helpers
from jdbw import data, inference, methods, train
from jdbw.errors import ConfigError
from jdbw.methods import irwgan
from jdbw.methods.cyclegan import Runner

TINY = dict(ngf=4, ndf=4, n_blocks=1, beta_dim=4)   # test_golden's


def _batch(d_steps=1, b=4, seed=0):
  rng = np.random.default_rng(seed)
  return {k: rng.uniform(-1, 1, (d_steps + 1, b, 32, 32, 1)).astype(np.float32)
          for k in ("x", "y")}


def _softmax_m(a):
  e = np.exp(a - a.max())
  return e / e.sum() * len(a)


def test_weights_and_the_generator_loss_are_the_authors():
  """β = softmax over the batch × m (mean 1), zero at or below the threshold; G's terms
  are β-weighted means of the per-image CycleGAN terms (identity through G_yx for x)."""
  m = methods.build("irwgan", threshold=0.9, **TINY)
  s = m.init_state(jax.random.PRNGKey(3))
  b = jax.tree.map(lambda a: a[0], _batch(seed=2))
  x, y = b["x"], b["y"]
  logits = {k: np.asarray(m.beta_logits(s.params, k, b[k]), np.float64) for k in "xy"}
  beta = {k: _softmax_m(v) for k, v in logits.items()}
  np.testing.assert_allclose([beta[k].mean() for k in "xy"], [1, 1], rtol=1e-6)
  used = {k: np.where(v > 0.9, v, 0.0) for k, v in beta.items()}
  _, (metrics, per_sample) = jax.jit(m.generator_step)(s, b, jax.random.PRNGKey(0))
  np.testing.assert_allclose(per_sample["w_x"], beta["x"], rtol=1e-5)
  run = Runner(m, s.params, s.spectral, None, train=True)
  fy, fx = np.asarray(run("G", "G_xy", x)), np.asarray(run("G", "G_yx", y))
  per = lambda a: np.asarray(a, np.float64).reshape(len(a), -1)
  adv = (np.mean(used["x"] * per(np.square(run("D", "D_y", fy) - 1)).mean(1))
         + np.mean(used["y"] * per(np.square(run("D", "D_x", fx) - 1)).mean(1)))
  l1 = lambda a, t: np.abs(per(a) - per(t)).mean(1)
  cycle = 10 * (np.mean(used["x"] * l1(run("G", "G_yx", fy), x))
                + np.mean(used["y"] * l1(run("G", "G_xy", fx), y)))
  idt = 10 * (np.mean(used["x"] * l1(run("G", "G_yx", x), x))
              + np.mean(used["y"] * l1(run("G", "G_xy", y), y)))
  np.testing.assert_allclose([metrics["g/adv"], metrics["g/cycle"], metrics["g/identity"]],
                             [adv, cycle, idt], rtol=2e-4)
  assert (used["x"] == 0).any() or (used["y"] == 0).any()   # the threshold bites here


def test_l_beta_favours_translations_that_fool_d_and_the_norm_pulls_to_uniform():
  a = jnp.zeros((4,))
  adv = {"x": jnp.array([0.1, 0.5, 0.9, 1.3])}
  g = jax.grad(lambda l: irwgan.beta_objective({"x": l}, adv, 0.0))(a)
  assert g[0] < 0 < g[3]          # the best-fooling image gains weight, the worst loses it
  skewed = jnp.array([2.0, 0.0, 0.0, 0.0])
  g = jax.grad(lambda l: irwgan.beta_objective({"x": l}, {"x": jnp.zeros(4)}, 1.0))(skewed)
  assert g[0] > 0 and (g[1:] < 0).all()   # the norm alone flattens the weights
  np.testing.assert_allclose(jax.grad(lambda l: irwgan.beta_objective(
      {"x": l}, {"x": jnp.zeros(4)}, 1.0))(a), 0.0, atol=1e-7)   # uniform is its minimum


def test_the_evaluators_weights_are_the_losses_renormalised():
  m = methods.build("irwgan", threshold=0.9, **TINY)
  s = m.init_state(jax.random.PRNGKey(3))
  b = jax.tree.map(lambda a: a[0], _batch(seed=2))
  w_x, w_y = m.normalise_weights(m.weight_logits(s.params, b["x"], None, None, b["y"]), 4, 0)
  beta = _softmax_m(np.asarray(m.beta_logits(s.params, "x", b["x"]), np.float64))
  used = np.where(beta > 0.9, beta, 0.0)
  np.testing.assert_allclose(w_x, used / used.sum(), rtol=1e-5)
  assert np.isclose(float(np.sum(w_y)), 1.0) and m.weighted_sides == ("x", "y")


def test_devices_match_one_device():
  m = methods.build("irwgan", **TINY)
  state = jax.jit(m.init_state)(jax.random.PRNGKey(0))
  for (ref_state, ref_metrics, ref_w), (got_state, got_metrics, got_w) in (
      helpers.iterations_across_devices(m, state, _batch(), ("shard_map",))):
    chex.assert_trees_all_close(got_metrics, ref_metrics, rtol=2e-4, atol=1e-6)
    chex.assert_trees_all_close(train.flat_per_sample(got_w), train.flat_per_sample(ref_w),
                                rtol=1e-4, atol=1e-6)
    chex.assert_trees_all_close(got_state.params, ref_state.params, rtol=1e-4,
                                atol=2 * m.config.lr)


def test_a_tiny_run_resumes_exactly_and_evaluates_its_weights(tmp_path):
  specs = {"x": data.DomainSpec(source="digits", name="x"),
           "y": data.DomainSpec(source="digits", classes="0:0.5", transform="sr", name="y")}
  m = methods.build("irwgan", **TINY)
  run = train.RunConfig(workdir=str(tmp_path / "a"), steps=1, batch_size=8, checkpoint_every=1,
                        figure_every=2, log_every=1)
  helpers.resume_matches_straight(m, run, specs, 2)
  assert "figure3_weights.png" in {p.name for p in (tmp_path / "a" / "figures").iterdir()}
  tr = inference.Translator.from_workdir(str(tmp_path / "a"))
  assert tr.translate(np.zeros((2, 32, 32, 1), np.float32), "yx", seed=0).shape == (2, 32, 32, 1)
  res = helpers.evaluate_small(str(tmp_path / "a"))
  assert {"class_consistency_xy", "class_consistency_yx", "tv_weighted"} <= set(res["scalars"])


@pytest.mark.parametrize("kw,needles", [
    (dict(batch_weight="two_sided"), ("--batch_weight", "('none',)")),
    (dict(threshold=-0.1), ("--threshold", ">= 0")),
    (dict(beta_layers=5), ("--beta_layers", "--resolution >= 64")),
    (dict(beta_dim=0), ("--beta_dim", ">= 1")),
    (dict(pool_size=50), ("--pool_size", "no history pool")),
])
def test_refusals_are_one_line(kw, needles):
  with pytest.raises(ConfigError) as e:
    methods.build("irwgan", **kw)
  helpers.one_line(e, *needles)
