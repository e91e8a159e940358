"""MUNIT and MUNIT + batch weight: parts, losses against plain MUNIT formulas, devices,
and a tiny run through the shared loop, inference and evaluation."""

import dataclasses
import os

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import helpers

from jdbw import data, inference, train
from jdbw.nets import munit as mm
from jdbw.methods import munit
from jdbw.evaluation import evaluator, report

TINY = dict(gen_dim=4, mlp_dim=8, dis_dim=4, w_features=2)


def _batch(d_steps=1, b=4, seed=0):
  rng = np.random.default_rng(seed)
  return {k: rng.uniform(-1, 1, (d_steps + 1, b, 32, 32, 1)).astype(np.float32)
          for k in ("x", "y")}


def test_part_shapes():
  """Shapes through `jax.eval_shape` (traced, never compiled: op by op, these inits cost
  about 30 s of compiling tiny programs); the generator's output range is computed."""
  x = jnp.zeros((3, 32, 32, 1))
  key = jax.random.PRNGKey(0)
  shapes = lambda module, *a: jax.eval_shape(
      lambda: module.apply(module.init(key, *a), *a))
  enc = mm.ContentEncoder(dim=8, n_down=1, n_res=2)
  chex.assert_shape(shapes(enc, x), (3, 16, 16, 16))
  senc = mm.StyleEncoder(dim=8, style_dim=8, n_down=4)
  chex.assert_shape(shapes(senc, x), (3, 8))
  gen = mm.AdaINGenerator(out_channels=3, dim=8, style_dim=8, mlp_dim=16)
  v = jax.eval_shape(gen.init, key, x, jnp.zeros((3, 8)))
  # MLP output: (bias, scale) for each of the 2 convs of each of the n_res=2 blocks.
  chex.assert_shape(v["params"]["mlp"]["Dense_2"]["kernel"], (16, 4 * 2 * 16))
  out = jax.jit(lambda: gen.apply(gen.init(key, x, jnp.zeros((3, 8))), x, jnp.ones((3, 8))))()
  chex.assert_shape(out, (3, 32, 32, 3))
  assert float(jnp.max(jnp.abs(out))) <= 1.0
  dis = mm.MsImageDis(dim=8, n_layer=4, num_scales=2)
  chex.assert_shape(shapes(dis, x), [(3, 2, 2), (3, 1, 1)])


def test_adain_sets_per_sample_channel_statistics():
  x = jax.random.normal(jax.random.PRNGKey(1), (2, 8, 8, 3))
  block = mm.ConvBlock(4, 3, 1, 1, "adain", "none")
  bias = jnp.array([[0.5, -1.0, 2.0, 0.0], [1.0, 1.0, 1.0, 1.0]])
  scale = jnp.array([[1.0, 2.0, 0.5, 3.0], [0.1, 0.2, 0.3, 0.4]])
  v = block.init(jax.random.PRNGKey(0), x, (bias, scale))
  out = block.apply(v, x, (bias, scale))
  np.testing.assert_allclose(out.mean((1, 2)), bias, atol=1e-5)
  np.testing.assert_allclose(out.std((1, 2)), scale, rtol=1e-3)


def test_style_from_noise_is_the_normal_prior():
  z = jax.random.uniform(jax.random.PRNGKey(0), (200000,), minval=-1.0, maxval=1.0)
  s = np.asarray(munit.style_from_noise(z))
  assert np.all(np.isfinite(s))
  assert abs(s.mean()) < 0.01 and abs(s.std() - 1.0) < 0.01
  np.testing.assert_allclose(np.quantile(s, [0.1587, 0.5, 0.8413]), [-1, 0, 1], atol=0.02)


def _reference_losses(m, state, batch, rng):
  """MUNIT's gen_update / dis_update written with plain batch means (no weights)."""
  x, y = batch["x"][0], batch["y"][0]
  key = jax.random.fold_in(jax.random.fold_in(state.rng, state.step), 0)
  s_x, s_y = m._styles(key, x.shape[0], None)
  p = state.params
  c_x, s_x_own = m.encode(p, "G_x", x)
  c_y, s_y_own = m.encode(p, "G_y", y)
  x_rec, y_rec = m.decode(p, "G_x", c_x, s_x_own), m.decode(p, "G_y", c_y, s_y_own)
  x_ba, x_ab = m.decode(p, "G_x", c_y, s_x), m.decode(p, "G_y", c_x, s_y)
  c_b_rec, s_a_rec = m.encode(p, "G_x", x_ba)
  c_a_rec, s_b_rec = m.encode(p, "G_y", x_ab)
  l1 = lambda a, b: jnp.mean(jnp.abs(a - b))
  gan = lambda outs, t: sum(jnp.mean((o - t) ** 2) for o in outs)
  return {"g/recon_x": l1(x_rec, x) + l1(y_rec, y),
          "g/recon_s": l1(s_a_rec, s_x) + l1(s_b_rec, s_y),
          "g/recon_c": l1(c_a_rec, c_x) + l1(c_b_rec, c_y),
          "g/adv": gan(m.discriminate(p, "D_y", x_ab), 1.0) + gan(m.discriminate(p, "D_x", x_ba), 1.0)}


def test_batch_weight_off_is_plain_munit_loss():
  m = munit.MUNIT(munit.MUNITConfig(**TINY))
  state = m.init_state(jax.random.PRNGKey(0))
  batch = _batch()
  key = jax.random.fold_in(jax.random.fold_in(state.rng, state.step), 0)
  # Compiled (eagerly, MUNIT's hundreds of small ops took three times as long).
  _, (metrics, per_sample) = jax.jit(m.generator_step)(
      state, jax.tree.map(lambda a: a[0], batch), key)
  ref = _reference_losses(m, state, batch, key)
  for k, v in ref.items():
    np.testing.assert_allclose(metrics[k], v, rtol=1e-5, err_msg=k)
  np.testing.assert_array_equal(per_sample["w_x"], np.ones(4))
  # The discriminator loss, too (fakes from the same styles).
  d_key = jax.random.PRNGKey(3)
  b1 = jax.tree.map(lambda a: a[1], batch)
  _, d_metrics = jax.jit(m.discriminator_step)(state, b1, d_key)
  s_x, s_y = m._styles(d_key, 4, None)
  p = state.params
  x_ab = m.decode(p, "G_y", m.encode(p, "G_x", b1["x"])[0], s_y)
  x_ba = m.decode(p, "G_x", m.encode(p, "G_y", b1["y"])[0], s_x)
  gan = lambda outs, t: sum(jnp.mean((o - t) ** 2) for o in outs)
  want = (gan(m.discriminate(p, "D_y", x_ab), 0.0) + gan(m.discriminate(p, "D_y", b1["y"]), 1.0)
          + gan(m.discriminate(p, "D_x", x_ba), 0.0) + gan(m.discriminate(p, "D_x", b1["x"]), 1.0))
  np.testing.assert_allclose(d_metrics["d/loss"], want, rtol=1e-5)


def test_batch_weight_weights_the_fake_side_and_trains_w():
  m = munit.MUNIT(munit.MUNITConfig(batch_weight="two_sided", **TINY))
  state = m.init_state(jax.random.PRNGKey(0))
  batch = _batch()
  new, metrics, per_sample = jax.jit(m.iteration)(state, batch)
  assert "w/loss" in metrics and np.isfinite(float(metrics["w/loss"]))
  np.testing.assert_allclose(np.sum(per_sample["w_x"]) / 4, 1.0, rtol=1e-5)
  assert not np.allclose(per_sample["w_x"], 1.0)
  changed = jax.tree_util.tree_flatten_with_path(jax.tree.map(
      lambda a, b: bool(jnp.any(a != b)), state.params["W"], new.params["W"]))[0]
  w = state.params["W"]
  last = {net: max(w[net], key=lambda n: int(n.rsplit("_", 1)[1])) for net in w}
  # The last layer's bias shifts every logit alike, which the softmax normalisation
  # ignores: its gradient is zero up to float noise, so it may or may not move (seen
  # both ways). Every other parameter of W_x and W_y must train.
  stuck = [jax.tree_util.keystr(p) for p, c in changed if not c
           and not (p[1].key == last[p[0].key] and p[-1].key == "bias")]
  assert not stuck and len(changed) > 4, stuck


# shard_map (the default wrapper) on both variants. pmap wraps the same step code
# (train.compile_iteration) and is checked once, on JD (test_train.py).
@pytest.mark.parametrize("bw", ["none", "two_sided"])
def test_two_devices_match_one_device(bw):
  assert jax.device_count() == 2
  m = munit.MUNIT(munit.MUNITConfig(batch_weight=bw, **TINY))
  state = m.init_state(jax.random.PRNGKey(0))
  batch = _batch()
  for (ref_state, ref_metrics, ref_w), (got_state, got_metrics, got_w) in (
      helpers.iterations_across_devices(m, state, batch, ("shard_map",))):
    chex.assert_trees_all_close(got_metrics, ref_metrics, rtol=2e-4, atol=1e-6)
    chex.assert_trees_all_close(train.flat_per_sample(got_w), train.flat_per_sample(ref_w),
                                rtol=1e-5)
    # As for JD: moments ∝ gradients; params within ±lr per step where a gradient is
    # exactly zero in theory (biases before instance norm) and float noise sets Adam's sign.
    chex.assert_trees_all_close(got_state.opt_state, ref_state.opt_state, rtol=2e-3,
                                atol=1e-6)
    chex.assert_trees_all_close(got_state.params, ref_state.params, rtol=1e-4,
                                atol=2 * m.config.lr * 2)


def test_tiny_run_checkpoints_figures_resume_inference_and_evaluation(tmp_path):
  m = munit.MUNIT(munit.MUNITConfig(batch_weight="two_sided", **TINY))
  specs = {"x": data.DomainSpec(source="digits", name="x"),
           "y": data.DomainSpec(source="digits", classes="0:0.5", transform="sr", name="y")}
  run = train.RunConfig(workdir=str(tmp_path), steps=2, batch_size=8, checkpoint_every=1,
                        figure_every=2, log_every=1)
  train.train(m, run, specs)
  assert inference.checkpoint_steps(str(tmp_path)) == [1, 2]
  for png in ("figure2_transfer.png", "figure3_weights.png", "figure4_noise.png"):
    assert os.path.isfile(tmp_path / "figures" / png)
  state = train.train(m, dataclasses.replace(run, steps=3, figure_every=0), specs)  # resumes at 2
  assert int(state.step) == 3
  tr = inference.Translator.from_workdir(str(tmp_path))
  assert isinstance(tr.method, munit.MUNIT)
  out = tr.translate(np.zeros((2, 32, 32, 1), np.float32), "yx", seed=1)
  assert out.shape == (2, 32, 32, 1)
  # The style of a reference X image (X's style encoder) instead of noise.
  ref = np.random.default_rng(0).uniform(-1, 1, (32, 32, 1)).astype(np.float32)
  noise = np.asarray(tr._encode(jnp.asarray(ref[None]), "yx"))
  np.testing.assert_allclose(tr.translate(np.zeros((2, 32, 32, 1), np.float32), "yx", style=ref),
                             tr.translate(np.zeros((2, 32, 32, 1), np.float32), "yx",
                                          noise=np.repeat(noise, 2, 0)), rtol=1e-5, atol=1e-6)
  cfg = evaluator.EvalConfig(samples=100, batch_size=100, noise_sources=10, noise_draws=2,
                             classifier_dir=helpers.shared_classifier_dir(),
                             min_classifier_accuracy=0.5)
  from jdbw.evaluation import classifier
  res = report.evaluate_workdir(str(tmp_path), cfg, classifier_config=classifier.ClassifierConfig(
      **helpers.DIGITS_CLASSIFIER))
  assert {"class_consistency_xy", "class_consistency_yx", "tv_weighted"} <= set(res["scalars"])
