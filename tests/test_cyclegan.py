"""CycleGAN and DistanceGAN (each + batch weight): networks, loss terms against the
references' formulas (numpy), the history pool in the state, distance normalisation,
batch weight off = the plain method, devices, and tiny runs with exact resume."""

import dataclasses
import json
import os
import types

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import helpers

from jdbw import checkpoint, data, inference, methods, train
from jdbw.methods import cyclegan as cg
from jdbw.methods import distancegan as dg
from jdbw.nets import cyclegan as nets_cg

TINY_CG = dict(ngf=4, ndf=4, n_blocks=1, w_features=2)
TINY_DG = dict(g_dim=4, d_dim=4, w_features=2)


def _batch(d_steps=1, b=4, seed=0, channels=1):
  rng = np.random.default_rng(seed)
  return {k: rng.uniform(-1, 1, (d_steps + 1, b, 32, 32, channels)).astype(np.float32)
          for k in ("x", "y")}


def _apply(m, state, part, name, x, train_mode=False):
  return cg.Runner(m, state.params, state.spectral, None, train_mode)(part, name, x)


def test_network_shapes_at_both_sizes():
  key = jax.random.PRNGKey(0)
  x = jnp.zeros((2, 32, 32, 1))
  g = nets_cg.ResnetGenerator(3, ngf=8, n_blocks=2)
  chex.assert_shape(g.apply(g.init(key, x), x), (2, 32, 32, 3))
  d = nets_cg.PatchDiscriminator(ndf=8, n_layers=2)
  chex.assert_shape(d.apply(d.init(key, x), x), (2, 6, 6))
  # The reference's 256x256 networks, selectable at 128: 14x14 patch scores.
  big = jnp.zeros((1, 128, 128, 3))
  g9 = nets_cg.ResnetGenerator(3, ngf=64, n_blocks=9)
  out = jax.eval_shape(lambda: g9.apply(g9.init(key, big), big))
  chex.assert_shape(out, (1, 128, 128, 3))
  d3 = nets_cg.PatchDiscriminator(ndf=64, n_layers=3)
  chex.assert_shape(jax.eval_shape(lambda: d3.apply(d3.init(key, big), big)), (1, 14, 14))
  e = nets_cg.EncoderDecoderGenerator(out_channels=3, dim=8)
  v = e.init(key, x)
  assert "batch_stats" in v   # and the authors' convolutions have no bias:
  assert not [k for k, p in v["params"].items() if k.startswith("Conv") and "bias" in p]
  chex.assert_shape(e.apply(v, x, train=False), (2, 32, 32, 3))
  dd = nets_cg.DCGANDiscriminator(dim=8)
  chex.assert_shape(dd.apply(dd.init(key, x), x, train=False), (2, 1, 1))


def test_cyclegan_generator_loss_is_the_references():
  m = cg.CycleGAN(cg.CycleGANConfig(**TINY_CG))
  state = m.init_state(jax.random.PRNGKey(0))
  b = _batch()
  x, y = b["x"][0], b["y"][0]
  _, (metrics, _) = jax.jit(m.generator_step)(state, {"x": x, "y": y}, jax.random.PRNGKey(1))
  f = lambda part, name, a: np.asarray(_apply(m, state, part, name, a), np.float64)
  fy, fx = f("G", "G_xy", x), f("G", "G_yx", y)
  adv = np.mean((f("D", "D_y", fy) - 1) ** 2) + np.mean((f("D", "D_x", fx) - 1) ** 2)
  cycle = 10 * (np.mean(np.abs(f("G", "G_yx", fy) - x)) + np.mean(np.abs(f("G", "G_xy", fx) - y)))
  idt = 10 * 0.5 * (np.mean(np.abs(f("G", "G_xy", y) - y)) + np.mean(np.abs(f("G", "G_yx", x) - x)))
  np.testing.assert_allclose([metrics["g/adv"], metrics["g/cycle"], metrics["g/identity"]],
                             [adv, cycle, idt], rtol=2e-5)


def test_cyclegan_discriminator_loss_and_pool_in_the_state():
  m = cg.CycleGAN(cg.CycleGANConfig(pool_size=6, **TINY_CG))
  state = m.init_state(jax.random.PRNGKey(0))
  b = _batch()
  x, y = b["x"][1], b["y"][1]
  new, metrics = jax.jit(m.discriminator_step)(state, {"x": x, "y": y}, jax.random.PRNGKey(2))
  # An empty pool (6 slots >= 4 images) shows the new fakes and stores them in order.
  f = lambda part, name, a: np.asarray(_apply(m, state, part, name, a), np.float64)
  fy, fx = f("G", "G_xy", x), f("G", "G_yx", y)
  ref = 0.5 * (np.mean((f("D", "D_y", y) - 1) ** 2) + np.mean(f("D", "D_y", fy) ** 2)
               + np.mean((f("D", "D_x", x) - 1) ** 2) + np.mean(f("D", "D_x", fx) ** 2))
  np.testing.assert_allclose(metrics["d/loss"], ref, rtol=2e-5)
  pool = new.extras["pool"]
  assert int(pool["y"]["count"]) == 4 and int(pool["x"]["count"]) == 4
  np.testing.assert_allclose(pool["y"]["images"][:4], fy, atol=1e-5)
  np.testing.assert_array_equal(pool["y"]["images"][4:], 0)
  # A second batch fills it, then swaps: the count stops at the size.
  again, _ = jax.jit(m.discriminator_step)(new, {"x": x, "y": y}, jax.random.PRNGKey(3))
  assert int(again.extras["pool"]["y"]["count"]) == 6


def test_pool_keeps_each_images_weight_beside_it():
  pool = cg.pool_init(3, (2, 2, 1))
  rng = jax.random.PRNGKey(0)
  for k in range(6):
    images = jnp.arange(4.0)[:, None, None, None] * jnp.ones((4, 2, 2, 1)) + 10 * k
    weights = jnp.arange(4.0) + 10 * k
    pool, shown, shown_w = cg.pool_query(pool, images, weights, jax.random.fold_in(rng, k), None)
    # Whatever was swapped in or out, every shown image carries its own weight.
    np.testing.assert_array_equal(np.asarray(shown)[:, 0, 0, 0], np.asarray(shown_w))
    np.testing.assert_array_equal(np.asarray(pool["images"])[:, 0, 0, 0],
                                  np.asarray(pool["weights"]))
  assert np.asarray(shown_w).max() >= 50 and np.asarray(pool["weights"]).min() < 50


@pytest.mark.parametrize("name,kw", [("cyclegan", dict(pool_size=3, **TINY_CG)),
                                     ("distancegan", dict(cycle_weight=1.0, distance="both",
                                                          **TINY_DG))])
def test_batch_weight_before_bw_start_is_the_plain_method(name, kw):
  """With ω uniform (step < bw_start) the weighted method trains G and D exactly as
  the plain one (and W gets no gradient)."""
  plain = methods.build(name, **kw)
  weighted = methods.build(name, batch_weight="two_sided", bw_start=100, **kw)
  b = _batch()
  out = []
  for m in (plain, weighted):
    s = m.init_state(jax.random.PRNGKey(0))
    if name == "distancegan":
      s = m.prepare(s, {k: _batch(d_steps=4, seed=5)[k] for k in ("x", "y")})
    s, metrics, _ = jax.jit(m.iteration)(s, b)
    s, metrics, _ = jax.jit(m.iteration)(s, _batch(seed=1))
    out.append((s, metrics))
  (s0, m0), (s1, m1) = out
  # Where a gradient is (near) zero, e.g. biases before an instance norm, float noise of
  # the two programs sets the sign of Adam's first steps: up to 2 lr per step on a few
  # entries. Everything else agrees.
  lr = plain.config.lr
  for part in ("G", "D"):
    a = np.concatenate([np.ravel(v) for v in jax.tree.leaves(jax.device_get(s1.params[part]))])
    b = np.concatenate([np.ravel(v) for v in jax.tree.leaves(jax.device_get(s0.params[part]))])
    off = np.abs(a - b) > 1e-6
    assert off.mean() < 0.01 and np.abs(a - b).max() <= 2 * 2 * lr * 1.1, (part, off.mean())
  chex.assert_trees_all_close(s1.extras, s0.extras, rtol=1e-6, atol=1e-7)
  shared = {k: v for k, v in m0.items()}
  chex.assert_trees_all_close({k: m1[k] for k in shared}, shared, rtol=1e-6)
  assert m1["w/loss"] >= 0


def test_batch_weight_trains_w_and_weights_the_fake_side():
  m = cg.CycleGAN(cg.CycleGANConfig(batch_weight="two_sided", pool_size=0, **TINY_CG))
  state = m.init_state(jax.random.PRNGKey(0))
  b = _batch(b=8)
  new, _, per_sample = jax.jit(m.iteration)(state, b)
  moved = jax.tree.map(lambda a, c: bool(np.any(np.asarray(a) != np.asarray(c))),
                       new.params["W"], state.params["W"])
  assert any(jax.tree.leaves(moved))
  w = np.asarray(per_sample["w_x"])
  assert w.shape == (8,) and np.isclose(w.mean(), 1.0, atol=1e-5) and w.std() > 0


# --- DistanceGAN's distances against loops as the authors wrote them ---

def _loop_pairwise(a, b, sa=(0.0, 1.0), sb=(0.0, 1.0)):
  n, tot, pairs = len(a), 0.0, 0
  for i in range(n - 1):
    for j in range(i + 1, n):
      da = (np.mean(np.abs(a[i] - a[j])) - sa[0]) / sa[1]
      db = (np.mean(np.abs(b[i] - b[j])) - sb[0]) / sb[1]
      tot, pairs = tot + abs(da - db), pairs + 1
  return tot / pairs


def test_distance_losses_match_the_authors_loops():
  rng = np.random.default_rng(0)
  a, b = rng.uniform(-1, 1, (5, 8, 8, 3)), rng.uniform(-1, 1, (5, 8, 8, 1))
  stats_a, stats_b = (0.6, 0.05), (0.7, 0.08)
  np.testing.assert_allclose(dg.pairwise_loss(jnp.asarray(a), jnp.asarray(b), stats_a, stats_b),
                             _loop_pairwise(a, b, stats_a, stats_b), rtol=1e-5)
  # Self-distance: top half (rows 0..3) against bottom half (rows 4..7) of each image.
  top, bottom = a[:, :4], a[:, 4:]
  want = np.abs((np.mean(np.abs(top - bottom), axis=(1, 2, 3)) - 0.6) / 0.05
                - (np.mean(np.abs(b[:, :4] - b[:, 4:]), axis=(1, 2, 3)) - 0.7) / 0.08)
  np.testing.assert_allclose(dg.self_loss_per_sample(jnp.asarray(a), jnp.asarray(b), stats_a,
                                                     stats_b), want, rtol=1e-5)
  # Pair weights: a pair of weight 0 drops out of the mean.
  w = np.ones((5, 5))
  w[0, :] = w[:, 0] = 0
  np.testing.assert_allclose(dg.pairwise_loss(jnp.asarray(a), jnp.asarray(b), stats_a, stats_b,
                                              jnp.asarray(w)),
                             _loop_pairwise(a[1:], b[1:], stats_a, stats_b), rtol=1e-5)


def test_distance_statistics_are_the_authors_batch_estimator():
  rng = np.random.default_rng(1)
  batches = rng.uniform(-1, 1, (4, 3, 8, 8, 1))
  d = [np.mean(np.abs(batches[i] - batches[j])) for i in range(3) for j in range(i + 1, 4)]
  np.testing.assert_allclose(dg.distance_statistics(batches, "pairwise"), (np.mean(d), np.std(d)))
  s = [np.mean(np.abs(bt[:, :4] - bt[:, 4:])) for bt in batches]
  np.testing.assert_allclose(dg.distance_statistics(batches, "self"), (np.mean(s), np.std(s)))


def test_distancegan_generator_loss_is_the_authors():
  c = dg.DistanceGANConfig(distance="both", cycle_weight=1.0, **TINY_DG)
  m = dg.DistanceGAN(c)
  state = m.prepare(m.init_state(jax.random.PRNGKey(0)), _batch(d_steps=5, seed=3))
  st = jax.tree.map(float, state.extras["distance_stats"])
  assert st["pairwise_x"]["mu"] > 0.5 and 0 < st["pairwise_x"]["sd"] < 0.1
  b = _batch(b=6)
  x, y = b["x"][0], b["y"][0]
  _, (metrics, _) = jax.jit(m.generator_step)(state, {"x": x, "y": y}, jax.random.PRNGKey(1))
  # Training-mode batch norm: the batch's own statistics.
  f = lambda part, name, a: np.asarray(_apply(m, state, part, name, a, True), np.float64)
  fy, fx = f("G", "G_xy", x), f("G", "G_yx", y)
  s = lambda k, side: (st[f"{k}_{side}"]["mu"], st[f"{k}_{side}"]["sd"])
  self_l = lambda a, b_, sa, sb: np.mean(dg.self_loss_per_sample(jnp.asarray(a), jnp.asarray(b_),
                                                                 sa, sb))
  dist = (0.05 * (_loop_pairwise(x, fy, s("pairwise", "x"), s("pairwise", "y"))
                  + self_l(x, fy, s("self", "x"), s("self", "y")))
          + 0.1 * (_loop_pairwise(y, fx, s("pairwise", "y"), s("pairwise", "x"))
                   + self_l(y, fx, s("self", "y"), s("self", "x"))))
  cycle = np.mean((f("G", "G_yx", fy) - x) ** 2) + np.mean((f("G", "G_xy", fx) - y) ** 2)
  np.testing.assert_allclose([metrics["g/distance"], metrics["g/cycle"]], [dist, cycle],
                             rtol=1e-4)


def test_distancegan_one_sided_trains_g_xy_and_d_y_alone():
  m = methods.build("distancegan", one_sided=True, batch_weight="one_sided", **TINY_DG)
  assert m.directions == ("xy",)
  state = m.prepare(m.init_state(jax.random.PRNGKey(0)), _batch(d_steps=3))
  assert set(state.params["G"]) == {"G_xy"} and set(state.params["D"]) == {"D_y"}
  assert set(state.params["W"]) == {"W"}
  new, metrics, per_sample = jax.jit(m.iteration)(state, _batch())
  assert set(per_sample) == {"w_x"} and np.isfinite(float(metrics["g/distance"]))
  with pytest.raises(Exception, match="--one_sided"):
    methods.build("distancegan", one_sided=True, cycle_weight=1.0, **TINY_DG)
  with pytest.raises(Exception, match="--pool_size"):
    methods.build("distancegan", one_sided=True, batch_weight="one_sided", pool_size=5,
                  **TINY_DG)


def test_figure3_draws_a_side_without_weights(tmp_path):
  """One-sided DistanceGAN records weights of X only: Figure 3 says Y is not weighted
  (a never-recorded series is None) instead of failing."""
  from jdbw import figures, hooks
  assert hooks.as_rows([None, None]) is None
  path = figures.weight_curves(str(tmp_path / "f3.png"), [10, 20],
                               {"x": np.ones((2, 3)), "y": hooks.as_rows([None, None])},
                               "Figure 3", targets={"x": np.ones(3), "y": np.ones(3)},
                               highlight=0)
  assert os.path.getsize(path) > 0


@pytest.mark.parametrize("name,kw,weighted", [
    ("cyclegan", dict(**TINY_CG), ()),
    ("cyclegan", dict(batch_weight="two_sided", **TINY_CG), ("x", "y")),
    ("distancegan", dict(one_sided=True, batch_weight="one_sided", **TINY_DG), ("x",)),
    ("jd", dict(batch_weight="one_sided"), ("x",)),
    ("jd", dict(batch_weight="none"), ())])
def test_figure3_draws_weights_of_the_weighted_sides_only(tmp_path, monkeypatch, name, kw,
                                                           weighted):
  """Unweighted sides record uniform weights (one code path); Figure 3 says they are not
  weighted instead of drawing flat lines at 1, and keeps the critic rows of both sides;
  its data file and the TensorBoard scalars leave the uniform weights out."""
  from jdbw import figures, hooks
  m = methods.build(name, **kw)
  assert m.bw.weighted_sides == weighted
  dom = types.SimpleNamespace(num_classes=2, probs=np.array([0.5, 0.5]),
                              data=types.SimpleNamespace(class_names=None, labelled=True,
                                                         mixture=None))
  _, monitor = hooks.default_hooks(m, {"x": dom, "y": dom}, ema=0.0, every=1)
  h = hooks.new_history([monitor])
  monitor.observe(h, 1, {"w_x": np.array([1.5, 0.5]), "w_y": np.ones(2),
                         "d_x": np.array([1.0, 0.0]), "d_y": np.array([0.0, 1.0])},
                  {"x": np.array([0, 1]), "y": np.array([0, 1])})
  draw, seen = figures.weight_curves, {}

  def spy(path, steps, curves, title, **k):
    seen.update(curves=curves, critic=k["critic"])
    return draw(path, steps, curves, title, **k)

  monkeypatch.setattr(figures, "weight_curves", spy)
  paths = monitor.figures(m, types.SimpleNamespace(step=1), None, h, str(tmp_path), 0)
  assert {s for s, c in seen["curves"].items() if c is not None} == set(weighted)
  assert all(seen["critic"][s] is not None for s in ("x", "y"))
  assert os.path.getsize(paths[0]) > 0
  with open(paths[1]) as f:   # the data file and the logged scalars drop them too
    record = json.load(f)
  assert record["weighted_sides"] == list(weighted)
  assert {s for s in ("x", "y") if record[f"weights_{s}"] is not None} == set(weighted)
  logged = {k.split("/")[0] for k in monitor.scalars(h, 1)}
  assert logged == {f"weights_{s}" for s in weighted} | {"critic_x", "critic_y"}


# shard_map, the default wrapper. pmap wraps the same step code (train.compile_iteration)
# and is checked once, on JD (test_train.py).
@pytest.mark.parametrize("name,kw", [
    ("cyclegan", dict(batch_weight="two_sided", pool_size=3, **TINY_CG)),
    ("distancegan", dict(batch_weight="two_sided", distance="both", cycle_weight=1.0,
                         bw_reconstruction=True, **TINY_DG))])
def test_devices_match_one_device(name, kw):
  """Two devices: the shared pool, batch norm over the global batch and distances over
  global pairs give the one-device iteration."""
  assert jax.device_count() == 2
  m = methods.build(name, **kw)
  state = m.init_state(jax.random.PRNGKey(0))
  if name == "distancegan":
    state = m.prepare(state, _batch(d_steps=4, seed=5))
  copy = lambda t: jax.tree.map(lambda a: jnp.array(a, copy=True), t)
  ref = copy(state)
  for i in range(2):
    ref, ref_metrics, ref_w = jax.jit(m.iteration)(ref, _batch(seed=i))
  mode = "shard_map"
  fn = train.compile_iteration(m, mode)
  got = train.place_state(copy(state), mode)
  for i in range(2):
    got, got_metrics, got_w = fn(got, train.place_batch(_batch(seed=i), mode))
  got = jax.device_get(train.host_state(got, mode))
  got_metrics = jax.tree.map(lambda a: np.asarray(a).reshape(-1)[0], got_metrics)
  chex.assert_trees_all_close(got_metrics, ref_metrics, rtol=2e-4, atol=1e-6)
  chex.assert_trees_all_close(train.flat_per_sample(got_w), train.flat_per_sample(ref_w),
                              rtol=1e-4, atol=1e-6)
  chex.assert_trees_all_close(got.extras, jax.device_get(ref.extras), rtol=1e-4, atol=1e-5)
  # Adam can turn a rounding-level gradient difference near 0 into a step of ±lr, so after
  # two iterations params may differ by up to 2·lr·2, and the batch-norm statistics of
  # the second iteration (computed with those params) by as much (5.7e-5 seen on a
  # machine whose reductions round differently).
  tol = 2 * m.config.lr * 2
  chex.assert_trees_all_close(got.spectral, jax.device_get(ref.spectral), rtol=1e-4, atol=tol)
  chex.assert_trees_all_close(got.params, jax.device_get(ref.params), rtol=1e-4, atol=tol)


@pytest.mark.parametrize("name,kw", [("cyclegan", dict(batch_weight="two_sided", **TINY_CG)),
                                     ("distancegan", TINY_DG)])
def test_a_fresh_state_can_be_donated(name, kw):
  """No two leaves of init_state share a buffer (jit with donated state, as the loop and
  experiments.benchmark run it, refuses a buffer donated twice)."""
  m = methods.build(name, **kw)
  helpers.assert_own_buffers(m.init_state(jax.random.PRNGKey(0)))


def test_checkpoints_from_before_extras_restore(tmp_path):
  """A TrainState saved without the `extras` field (earlier versions) restores."""
  m = methods.build("munit", gen_dim=4, mlp_dim=8, dis_dim=4)
  state = m.init_state(jax.random.PRNGKey(0))
  ckpt = checkpoint.Checkpointer(str(tmp_path))
  import orbax.checkpoint as ocp
  old = {f.name: getattr(state, f.name) for f in dataclasses.fields(state) if f.name != "extras"}
  ckpt.manager.save(1, args=ocp.args.Composite(state=ocp.args.StandardSave(old),
                                               history=ocp.args.JsonSave({"steps": []})))
  ckpt.wait()
  restored, history = ckpt.restore(jax.eval_shape(m.init_state, jax.random.PRNGKey(0)))
  ckpt.close()
  assert restored.extras == {} and history == {"steps": []}
  chex.assert_trees_all_equal(jax.device_get(restored.params), jax.device_get(state.params))


@pytest.mark.slow
def test_tiny_runs_resume_exactly_translate_and_evaluate(tmp_path):
  specs = {"x": data.DomainSpec(source="digits", name="x"),
           "y": data.DomainSpec(source="digits", classes="0:0.5", transform="sr", name="y")}
  m = methods.build("cyclegan", batch_weight="two_sided", pool_size=6, **TINY_CG)
  run = train.RunConfig(workdir=str(tmp_path / "a"), steps=2, batch_size=4, checkpoint_every=1,
                        figure_every=4, log_every=1)
  resumed = helpers.resume_matches_straight(m, run, specs, 4)
  assert int(resumed.extras["pool"]["y"]["count"]) == 6
  figs = os.listdir(tmp_path / "a" / "figures")
  assert "figure2_transfer.png" in figs and "figure4_noise.png" not in figs   # no noise
  tr = inference.Translator.from_workdir(str(tmp_path / "a"))
  out = tr.translate(np.zeros((2, 32, 32, 1), np.float32), "xy", seed=1)
  np.testing.assert_array_equal(out, tr.translate(np.zeros((2, 32, 32, 1), np.float32), "xy",
                                                  seed=2))   # z ignored
  from jdbw.evaluation import classifier, evaluator, report
  cfg = evaluator.EvalConfig(samples=100, batch_size=100, noise_sources=10, noise_draws=2,
                             classifier_dir=helpers.shared_classifier_dir(),
                             min_classifier_accuracy=0.5)
  res = report.evaluate_workdir(str(tmp_path / "a"), cfg,
                                classifier_config=classifier.ClassifierConfig(
                                    **helpers.DIGITS_CLASSIFIER))
  assert "not_applicable" in res["noise_xy"]
  assert not any(k.startswith("noise_") for k in res["scalars"])
  assert {"class_consistency_xy", "class_consistency_yx", "tv_weighted"} <= set(res["scalars"])
  # DistanceGAN: the statistics are drawn once, on the fresh run, and resume keeps them;
  # the resumed run is the straight one, bit for bit.
  d = methods.build("distancegan", distance_batches=3, **TINY_DG)
  drun = dataclasses.replace(run, workdir=str(tmp_path / "d"), steps=1, figure_every=0)
  first = train.train(d, drun, specs)
  again = train.train(d, dataclasses.replace(drun, steps=2), specs)
  st = jax.tree.map(float, first.extras["distance_stats"])
  assert st["pairwise_x"]["sd"] != 1.0
  assert jax.tree.map(float, again.extras["distance_stats"]) == st
  dstraight = train.train(d, dataclasses.replace(drun, steps=2, workdir=str(tmp_path / "e")),
                          specs)
  chex.assert_trees_all_equal(jax.device_get(again), jax.device_get(dstraight))


def test_svhn_mnist_flagfile_validates_every_variant_offline(tmp_path):
  """The seeds' SVHN -> MNIST comparison cannot run here (TFDS downloads); its flagfile
  is checked whole by the benchmark's --dry_run, in its own process (one entrypoint
  module per process), and a broken copy is refused in one line."""
  import subprocess
  import sys
  import helpers
  env = {**os.environ, "XLA_FLAGS": helpers.xla_flags()}
  cmd = [sys.executable, "-m", "experiments.mass_shift_benchmark",
         "--flagfile=experiments/configs/svhn_mnist.flags", "--dry_run",
         f"--workdir={tmp_path}"]
  out = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
  assert out.returncode == 0, out.stderr[-2000:]
  for variant in ("jd_bw", "jd", "munit", "munit_bw", "cyclegan", "cyclegan_bw", "distancegan",
                  "distancegan_bw", "dtn", "dtn_bw", "xgan", "xgan_bw"):
    assert f"dry run: {variant} = --model=" in out.stderr
  assert "tfds:svhn_cropped train (3 ch" in out.stderr and "tfds:mnist train (1 ch" in out.stderr
  # JD's MNIST-SVHN setting (Table 2 and the paper's d_z = 16 outside MNIST-SRMNIST).
  with open("experiments/configs/svhn_mnist.flags") as f:
    lines = set(f.read().split())
  assert {"--noise_dim=16", "--g_kernel=1", "--g_stride=1"} <= lines
  assert not os.listdir(tmp_path)   # nothing trained, nothing written
  bad = subprocess.run(cmd + ["--identity_weight=0.5"], capture_output=True, text=True,
                       env=env, timeout=300)
  assert bad.returncode == 2 and "--identity_weight" in bad.stderr.strip().splitlines()[-1]
