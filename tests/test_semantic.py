"""The semantic translators, DTN and XGAN, with and without batch weight: the networks and
the shared layers, the losses against references written out here, batch weight before
bw_start equal to the plain method, one device against two, a tiny run on digits that
resumes exactly (f fitted once, never refitted), translates and evaluates, the label
firewall of DTN's classifier f, and refusals in one line."""

import dataclasses

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import helpers
from jdbw import data, inference, methods, train
from jdbw.errors import ConfigError
from jdbw.methods import dtn
from jdbw.methods.cyclegan import Runner

# test_golden's tiny settings.
DTN_TINY = dict(g_dim=4, d_dim=4, f_dim=4, embed_dim=8, w_features=2)
XGAN_TINY = dict(g_dim=4, d_dim=4, e_dim=4, embed_dim=8, dann_dim=8, w_features=2)
F_TINY = dict(f_steps=30, f_draws=256, f_batch=32)


def _batch(d_steps=1, b=4, seed=0, cx=1, cy=1):
  rng = np.random.default_rng(seed)
  return {k: rng.uniform(-1, 1, (d_steps + 1, b, 32, 32, c)).astype(np.float32)
          for k, c in (("x", cx), ("y", cy))}


def _specs():
  return {"x": data.DomainSpec(source="digits", name="x"),
          "y": data.DomainSpec(source="digits", classes="0:0.5", transform="sr", name="y")}


def test_networks_shapes_and_xgans_shared_layers():
  m = methods.build("dtn", channels_x=3, channels_y=1, **DTN_TINY)
  s = m.init_state(jax.random.PRNGKey(0))
  assert set(s.params) == {"F", "G", "D", "W"} and set(s.opt_state) == {"G", "D", "W"}
  x = jnp.zeros((2, 32, 32, 3))
  e = m.module("F", "f").apply({"params": s.params["F"]["f"]}, x)
  assert e.shape == (2, 8)
  assert m.translate(s.params, s.spectral, x, None, "xy").shape == (2, 32, 32, 1)
  d = Runner(m, s.params, s.spectral, None, False)("D", "D", jnp.zeros((2, 32, 32, 1)))
  assert d.shape == (2, 3)
  xg = methods.build("xgan", channels_x=3, channels_y=1, **XGAN_TINY)
  s = xg.init_state(jax.random.PRNGKey(0))
  # One shared encoder tail and decoder head; the first encoder layers and the last
  # decoder layers per domain.
  assert set(s.params["G"]) == {"enc_x", "enc_y", "enc_shared", "dec_shared", "dec_x", "dec_y"}
  assert set(s.params["D"]) == {"D_x", "D_y", "dann"} and "F" not in s.params
  assert s.params["G"]["enc_x"]["Conv_0"]["kernel"].shape[2] == 3
  assert s.params["G"]["enc_y"]["Conv_0"]["kernel"].shape[2] == 1
  assert xg.translate(s.params, s.spectral, x, None, "xy").shape == (2, 32, 32, 1)
  assert xg.translate(s.params, s.spectral, jnp.zeros((2, 32, 32, 1)), None,
                      "yx").shape == (2, 32, 32, 3)
  assert "F" in methods.build("xgan", teacher_weight=1.0, **XGAN_TINY).init_state(
      jax.random.PRNGKey(0)).params


def _ce(logits, k):
  logits = np.asarray(logits, np.float64)
  lse = np.log(np.exp(logits).sum(-1))
  return np.mean(lse - logits[:, k])


def test_dtn_losses_are_the_papers():
  """L_GANG + α L_CONST + β L_TID + γ L_TV and the ternary L_D, recomputed here from the
  networks' outputs with numpy (three classes: G(source), G(target), real target)."""
  m = methods.build("dtn", tv_weight=0.5, **DTN_TINY)
  s = m.init_state(jax.random.PRNGKey(1))
  b = jax.tree.map(lambda a: a[0], _batch(seed=3))
  _, (metrics, _) = jax.jit(m.generator_step)(s, b, jax.random.PRNGKey(0))
  run = Runner(m, s.params, s.spectral, None, train=True)
  fx, fy = run("F", "f", b["x"]), run("F", "f", b["y"])
  gx, gy = run("G", "g", fx), run("G", "g", fy)
  adv = _ce(run("D", "D", gx), 2) + _ce(run("D", "D", gy), 2)
  const = 15.0 * np.mean(np.square(np.asarray(run("F", "f", gx)) - np.asarray(fx)))
  tid = 15.0 * np.mean(np.square(np.asarray(gy) - b["y"]))
  g = np.asarray(gx, np.float64)
  tv = 0.5 * np.mean(np.sqrt(np.square(g[:, 1:, :-1] - g[:, :-1, :-1])
                             + np.square(g[:, :-1, 1:] - g[:, :-1, :-1]) + 1e-8))
  np.testing.assert_allclose([metrics["g/adv"], metrics["g/const"], metrics["g/tid"],
                              metrics["g/tv"]], [adv, const, tid, tv], rtol=2e-4)
  _, d_metrics = jax.jit(m.discriminator_step)(s, b, jax.random.PRNGKey(0))
  run = Runner(m, s.params, s.spectral, None, train=True)
  gx = run("G", "g", run("F", "f", b["x"]))
  gy = run("G", "g", run("F", "f", b["y"]))
  d_ref = _ce(run("D", "D", gx), 0) + _ce(run("D", "D", gy), 1) + _ce(run("D", "D", b["y"]), 2)
  np.testing.assert_allclose(float(d_metrics["d/loss"]), d_ref, rtol=2e-4)


def _bce(logits, target):
  z = np.asarray(logits, np.float64).reshape(len(logits), -1)
  return np.mean(np.mean(np.logaddexp(0, -z) if target else np.logaddexp(0, z), -1))


def test_xgan_losses_are_the_papers():
  m = methods.build("xgan", rec_weight=1.0, dann_weight=0.5, sem_weight=2.0, gan_weight=0.3,
                    **XGAN_TINY)
  s = m.init_state(jax.random.PRNGKey(2))
  b = jax.tree.map(lambda a: a[0], _batch(seed=4))
  x, y = b["x"], b["y"]
  _, (metrics, _) = jax.jit(m.generator_step)(s, b, jax.random.PRNGKey(0))
  run = Runner(m, s.params, s.spectral, None, train=True)
  ex, ey = m.encode(run, "x", x), m.encode(run, "y", y)
  fy, fx = m.decode(run, "y", ex), m.decode(run, "x", ey)
  rec = (np.mean(np.square(np.asarray(m.decode(run, "x", ex)) - x))
         + np.mean(np.square(np.asarray(m.decode(run, "y", ey)) - y)))
  dann = 0.5 * (_bce(run("D", "dann", ex), 0) + _bce(run("D", "dann", ey), 1))
  sem = 2.0 * (np.mean(np.abs(np.asarray(ex) - np.asarray(m.encode(run, "y", fy))))
               + np.mean(np.abs(np.asarray(ey) - np.asarray(m.encode(run, "x", fx)))))
  adv = 0.3 * (_bce(run("D", "D_y", fy), 1) + _bce(run("D", "D_x", fx), 1))
  np.testing.assert_allclose([metrics[k] for k in ("g/rec", "g/dann", "g/sem", "g/adv")],
                             [rec, dann, sem, adv], rtol=2e-4)


@pytest.mark.parametrize("name,kw,mode", [("dtn", DTN_TINY, "one_sided"),
                                          ("xgan", XGAN_TINY, "two_sided")])
def test_batch_weight_before_bw_start_is_the_plain_method(name, kw, mode):
  """ω uniform (step < bw_start): G and D train as the plain method's; after bw_start W
  moves and the weights leave uniform."""
  plain = methods.build(name, **kw)
  weighted = methods.build(name, batch_weight=mode, bw_start=100, **kw)
  out = []
  for m in (plain, weighted):
    s, metrics, _ = jax.jit(m.iteration)(m.init_state(jax.random.PRNGKey(0)), _batch())
    out.append((s, metrics))
  (s0, m0), (s1, m1) = out
  chex.assert_trees_all_close({k: m1[k] for k in m0}, m0, rtol=1e-5)
  for part in ("G", "D"):
    chex.assert_trees_all_close(s1.params[part], s0.params[part], atol=2 * plain.config.lr)
  live = methods.build(name, batch_weight=mode, **kw)
  s = live.init_state(jax.random.PRNGKey(0))
  new, _, per_sample = jax.jit(live.iteration)(s, _batch(b=8))
  assert any(jax.tree.leaves(jax.tree.map(lambda a, c: bool(np.any(a != c)),
                                          new.params["W"], s.params["W"])))
  w = np.asarray(per_sample["w_x"])
  assert np.isclose(w.mean(), 1.0, atol=1e-5) and w.std() > 0
  assert live.weighted_sides == (("x",) if mode == "one_sided" else ("x", "y"))


@pytest.mark.parametrize("name,kw", [("dtn", dict(batch_weight="one_sided", **DTN_TINY)),
                                     ("xgan", dict(batch_weight="two_sided", **XGAN_TINY))])
def test_devices_match_one_device(name, kw):
  """shard_map over two devices (batch norm and the weights over the global batch) gives
  the one-device iteration."""
  m = methods.build(name, **kw)
  state = jax.jit(m.init_state)(jax.random.PRNGKey(0))
  for (ref_state, ref_metrics, _), (got_state, got_metrics, _) in (
      helpers.iterations_across_devices(m, state, _batch(), ("shard_map",))):
    chex.assert_trees_all_close(got_metrics, ref_metrics, rtol=2e-4, atol=1e-6)
    chex.assert_trees_all_close(got_state.params, ref_state.params, rtol=1e-4,
                                atol=2 * m.config.lr)
    chex.assert_trees_all_close(got_state.spectral, ref_state.spectral, rtol=1e-4, atol=1e-5)


def test_a_dtn_run_fits_f_once_resumes_exactly_translates_and_evaluates(tmp_path, monkeypatch):
  m = methods.build("dtn", batch_weight="one_sided", **DTN_TINY, **F_TINY)
  fits = []
  real_fit = dtn.fit_f
  monkeypatch.setattr(dtn, "fit_f", lambda *a: fits.append(1) or real_fit(*a))
  monkeypatch.setenv("JDBW_CACHE", str(tmp_path / "cache"))
  run = train.RunConfig(workdir=str(tmp_path / "a"), steps=2, batch_size=8, checkpoint_every=1,
                        figure_every=3, log_every=1)
  first = train.train(m, run, _specs())
  assert len(fits) == 1
  f = jax.device_get(first.params["F"])
  chex.assert_trees_all_equal(f["f"], jax.device_get(   # the fitted f, now cached
      dtn.load_or_fit_f(_specs()["x"], m.config, None, 32)))
  assert len(fits) == 1
  monkeypatch.setattr(m, "pretrain", lambda *a: pytest.fail("a resumed run refitted f"))
  resumed = train.train(m, dataclasses.replace(run, steps=3), _specs())
  chex.assert_trees_all_equal(jax.device_get(resumed.params["F"]), f)
  monkeypatch.undo()
  monkeypatch.setenv("JDBW_CACHE", str(tmp_path / "cache"))
  fits.clear()
  monkeypatch.setattr(dtn, "fit_f", lambda *a: fits.append(1) or real_fit(*a))
  straight = train.train(m, dataclasses.replace(run, steps=3, workdir=str(tmp_path / "b"),
                                                figure_every=0), _specs())
  assert not fits   # the cached f
  chex.assert_trees_all_equal(jax.device_get(resumed), jax.device_get(straight))
  assert "figure3_weights.png" in {p.name for p in (tmp_path / "a" / "figures").iterdir()}
  tr = inference.Translator.from_workdir(str(tmp_path / "a"))
  assert tr.method.directions == ("xy",)
  out = tr.translate(np.zeros((2, 32, 32, 1), np.float32), "xy", seed=1)
  assert out.shape == (2, 32, 32, 1)
  res = helpers.evaluate_small(str(tmp_path / "a"))
  assert "class_consistency_xy" in res["scalars"] and "tv_weighted" in res["scalars"]
  assert "class_consistency_yx" not in res["scalars"]


def test_only_the_sources_training_labels_reach_f(tmp_path, monkeypatch):
  """The label firewall of --dtn_f=classifier: Y's labels and every test-split label
  poisoned leave a whole run bit-identical; X's training labels permuted change f (they
  are what it is fitted on). The autoencoder f reads no labels at all."""
  m = methods.build("dtn", **DTN_TINY, **F_TINY)
  run = train.RunConfig(workdir="", steps=2, batch_size=8, checkpoint_every=2,
                        figure_every=0, log_every=1)
  real_load, real_batches = data.sources.load_source, data.make_batches

  def poisoned_load(source, split="train", **kw):
    out = real_load(source, split, **kw)
    if "test" in split:
      out = dataclasses.replace(out, labels=np.random.default_rng(0).permutation(out.labels))
    return out

  def poisoned_batches(*a, **kw):
    rng = np.random.default_rng(1)
    for b in real_batches(*a, **kw):
      y = dict(b["y"], label=rng.integers(0, 10, np.shape(b["y"]["label"])).astype(np.int32))
      yield {**b, "y": y}

  def fit(tag, poison):
    monkeypatch.setenv("JDBW_CACHE", str(tmp_path / f"cache_{tag}"))
    with monkeypatch.context() as mp:
      if poison:
        mp.setattr(data.sources, "load_source", poisoned_load)
        mp.setattr(data, "make_batches", poisoned_batches)   # the loop's data module
      return jax.device_get(train.train(
          m, dataclasses.replace(run, workdir=str(tmp_path / tag)), _specs()))

  chex.assert_trees_all_equal(fit("clean", False), fit("poisoned", True))
  spec = _specs()["x"]
  images, labels = dtn.source_training_draws(spec, None, 256, 0, 32, with_labels=True)
  c = dataclasses.replace(m.config, f_steps=200)
  f_true, info = dtn.fit_f(c, images, labels)
  f_shuffled, _ = dtn.fit_f(c, images, np.random.default_rng(0).permutation(labels))
  assert info["train_accuracy"] > 0.3
  assert not np.allclose(jax.tree.leaves(f_true)[0], jax.tree.leaves(f_shuffled)[0])
  ae = dataclasses.replace(c, dtn_f="autoencoder")
  assert dtn.source_training_draws(spec, None, 8, 0, 32, with_labels=False)[1] is None
  f_ae, ae_info = dtn.fit_f(ae, images, None)
  assert "train_accuracy" not in ae_info and np.isfinite(ae_info["final_loss"])
  with pytest.raises(ConfigError) as e:   # f is fitted on X alone
    dtn.source_training_draws(_specs()["y"], None, 8, 0, 32, with_labels=True)
  helpers.one_line(e, "--source_y", "source domain X alone")


@pytest.mark.parametrize("name,kw,needles", [
    ("dtn", dict(batch_weight="two_sided"), ("--batch_weight", "('none', 'one_sided')")),
    ("dtn", dict(dtn_f="pretrained"), ("--dtn_f", "classifier")),
    ("dtn", dict(resolution=36), ("--resolution", "multiple of 8")),
    ("dtn", dict(const_weight=-1.0), ("--const_weight",)),
    ("dtn", dict(f_steps=0), ("--f_steps", ">= 1")),
    ("xgan", dict(batch_weight="one_sided"), ("--batch_weight", "('none', 'two_sided')")),
    ("xgan", dict(sem_weight=-0.5), ("--sem_weight", ">= 0")),
    ("xgan", dict(e_dim=0), ("--e_dim", ">= 1")),
])
def test_refusals_are_one_line(name, kw, needles):
  with pytest.raises(ConfigError) as e:
    methods.build(name, **kw)
  helpers.one_line(e, *needles)


def test_an_xgan_run_resumes_exactly(tmp_path):
  m = methods.build("xgan", batch_weight="two_sided", **XGAN_TINY)
  run = train.RunConfig(workdir=str(tmp_path / "a"), steps=1, batch_size=8, checkpoint_every=1,
                        figure_every=0, log_every=1)
  train.train(m, run, _specs())
  resumed = train.train(m, dataclasses.replace(run, steps=2), _specs())
  straight = train.train(m, dataclasses.replace(run, steps=2, workdir=str(tmp_path / "b")),
                         _specs())
  chex.assert_trees_all_equal(jax.device_get(resumed), jax.device_get(straight))
  tr = inference.Translator.from_workdir(str(tmp_path / "a"))
  assert tr.translate(np.zeros((2, 32, 32, 1), np.float32), "yx", seed=0).shape == (2, 32, 32, 1)
