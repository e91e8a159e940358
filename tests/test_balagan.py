"""BalaGAN: the contrastive stage (NT-Xent against numpy; on real digits it separates two
classes far better than chance), the translator's losses against a reference written
here, the (k + 1)² class pairs, one device against two, a tiny run on digits that fits
its modalities once, resumes exactly, translates with a reference image and evaluates its
clusters, and refusals in one line."""

import dataclasses
import os

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import helpers
from jdbw import data, inference, methods, train
from jdbw.errors import ConfigError
from jdbw.methods import balagan

TINY = dict(gen_dim=4, dis_dim=4, clusters=3, noise_dim=5, contrast_dim=4,
            contrast_features=8, bank_size=4)   # test_golden's
STAGE1 = dict(contrast_steps=20, contrast_batch=16, cluster_draws=64)


def _batch(d_steps=1, b=4, seed=0):
  rng = np.random.default_rng(seed)
  return {k: rng.uniform(-1, 1, (d_steps + 1, b, 32, 32, 1)).astype(np.float32)
          for k in ("x", "y")}


def test_nt_xent_is_simclrs():
  rng = np.random.default_rng(0)
  z1, z2 = rng.normal(size=(5, 3)), rng.normal(size=(5, 3))
  z = np.concatenate([z1, z2])
  z /= np.linalg.norm(z, axis=1, keepdims=True)
  sim = z @ z.T / 0.5
  want = 0.0
  for i in range(10):
    j = (i + 5) % 10
    others = [k for k in range(10) if k != i]
    want += -sim[i, j] + np.log(np.sum(np.exp(sim[i, others])))
  np.testing.assert_allclose(float(balagan.nt_xent(jnp.asarray(z1), jnp.asarray(z2), 0.5)),
                             want / 10, rtol=1e-5)
  aug = balagan.augment(jax.random.PRNGKey(0), jnp.asarray(rng.uniform(-1, 1, (6, 32, 32, 1))))
  assert aug.shape == (6, 32, 32, 1) and float(jnp.abs(aug).max()) <= 1.0


def test_the_contrastive_stage_separates_two_real_classes():
  """Digits 0 and 1 (real, offline): the encoder's features, clustered in two, match the
  classes far better than chance (NMI 0 at chance; labels only to score it)."""
  from jdbw.evaluation import metrics
  spec = data.DomainSpec(source="digits", classes="0:0.5,1:0.5", name="x")
  domain = data.load_domain(dataclasses.replace(spec, classes="0:0.5,1:0.5"))
  domain = dataclasses.replace(domain, probs=np.where(np.arange(10) < 2, 0.5, 0.0))
  out = next(iter(data.domain_dataset(domain, seed=0).batch(256).as_numpy_iterator()))
  c = balagan.BalaGANConfig(contrast_dim=8, contrast_features=16, contrast_steps=150,
                            contrast_batch=64)
  params, loss = balagan.fit_encoder(c, out["image"], 0)
  h = balagan.encoder_module(c).apply({"params": params}, jnp.asarray(out["image"]),
                                      method="embed")
  centres = balagan.spherical_kmeans(h, 2, 0)
  found = np.argmax(np.asarray(balagan.unit(h)) @ centres.T, -1)
  agreement = metrics.cluster_agreement(out["label"], found)
  assert np.isfinite(loss) and agreement["nmi"] > 0.3 and agreement["purity"] > 0.8, agreement


def _hinge_reference(m, s, b):
  """L_D's hinge, classification and R1 terms from the pairs, recomputed here."""
  a, _, ref, lb = m.pairs(s.params, b, None)
  g, d = s.params["G"]["G"], s.params["D"]["D"]
  fake = m.generate(g, a, m.code(g, ref))
  pick = lambda adv: np.asarray(adv)[np.arange(len(lb)), :, :, np.asarray(lb)]
  adv_r, cls_r, _ = m.D.apply({"params": d}, ref)
  adv_f, _, _ = m.D.apply({"params": d}, fake)
  real = np.mean(np.maximum(0, 1 - pick(adv_r)))
  fk = np.mean(np.maximum(0, 1 + pick(adv_f)))
  logits = np.asarray(cls_r, np.float64)
  ce = np.mean(np.log(np.exp(logits).sum(1)) - logits[np.arange(len(lb)), np.asarray(lb)])
  grads = np.stack([np.asarray(jax.grad(lambda im: m.critic(d, im[None], lb[i:i + 1])[0].mean())(
      ref[i])) for i in range(len(lb))])
  r1 = 10 * np.mean(np.sum(np.square(grads).reshape(len(lb), -1), 1))
  return real, fk, ce, r1


def test_losses_are_funits():
  m = methods.build("balagan", **TINY)
  s = m.init_state(jax.random.PRNGKey(1))
  helpers.assert_own_buffers(s)   # the EMA generator starts as a copy
  b = jax.tree.map(lambda a: a[0], _batch(seed=3))
  _, metrics = jax.jit(m.discriminator_step)(s, b, jax.random.PRNGKey(0))
  np.testing.assert_allclose([metrics[k] for k in ("d/real", "d/fake", "d/cls", "d/r1")],
                             _hinge_reference(m, s, b), rtol=2e-3, atol=1e-6)
  _, (g_metrics, _) = jax.jit(m.generator_step)(s, b, jax.random.PRNGKey(0))
  a, la, ref, lb = m.pairs(s.params, b, None)
  g, d = s.params["G"]["G"], s.params["D"]["D"]
  fake_r = m.generate(g, a, m.code(g, a))
  fake_t = m.generate(g, a, m.code(g, ref))
  np.testing.assert_allclose(g_metrics["g/rec"], 0.1 * np.mean(np.abs(fake_r - a)), rtol=1e-4)
  feat = lambda im, lab: np.asarray(m.critic(d, im, lab)[2])
  fm = (np.mean(np.abs(feat(fake_r, la) - feat(a, la)))
        + np.mean(np.abs(feat(fake_t, lb) - feat(ref, lb))))
  adv = 0.5 * (-np.mean(m.critic(d, fake_t, lb)[0]) - np.mean(m.critic(d, fake_r, la)[0]))
  np.testing.assert_allclose([g_metrics["g/fm"], g_metrics["g/adv"]], [fm, adv], rtol=1e-3,
                             atol=1e-6)


def test_pairs_cover_every_class_pair_and_devices_match_one_device():
  m = methods.build("balagan", **TINY)
  s = m.init_state(jax.random.PRNGKey(0))
  s = s.replace(params={**s.params, "F": {**s.params["F"], "centres": jnp.eye(3, 8)}})
  b = jax.tree.map(lambda a: a[0], _batch(b=8))
  _, la, _, lb = m.pairs(s.params, b, None)
  kinds = {(int(p) == 3, int(q) == 3) for p, q in zip(la, lb)}
  assert kinds == {(False, False), (False, True), (True, False), (True, True)}
  for (ref_state, ref_metrics, _), (got_state, got_metrics, _) in (
      helpers.iterations_across_devices(m, s, _batch(), ("shard_map",))):
    chex.assert_trees_all_close(got_metrics, ref_metrics, rtol=2e-4, atol=1e-6)
    chex.assert_trees_all_close(got_state.params, ref_state.params, rtol=1e-4,
                                atol=4 * m.config.lr)


def test_a_tiny_run_fits_modalities_once_resumes_translates_and_evaluates(tmp_path, monkeypatch):
  specs = {"x": data.DomainSpec(source="digits", name="x"),
           "y": data.DomainSpec(source="digits", classes="0:0.5", transform="sr", name="y")}
  m = methods.build("balagan", **TINY, **STAGE1)
  run = train.RunConfig(workdir=str(tmp_path / "a"), steps=1, batch_size=8, checkpoint_every=1,
                        figure_every=0, log_every=1)
  first = train.train(m, run, specs)
  centres = np.asarray(first.params["F"]["centres"])
  np.testing.assert_allclose(np.linalg.norm(centres, axis=1), 1.0, rtol=1e-5)
  monkeypatch.setattr(m, "pretrain", lambda *a: pytest.fail("a resumed run refitted"))
  resumed = train.train(m, dataclasses.replace(run, steps=2), specs)
  monkeypatch.undo()
  straight = train.train(m, dataclasses.replace(run, steps=2, workdir=str(tmp_path / "b")), specs)
  chex.assert_trees_all_equal(jax.device_get(resumed), jax.device_get(straight))
  tr = inference.Translator.from_workdir(str(tmp_path / "a"))
  x = np.zeros((2, 32, 32, 1), np.float32)
  ref = np.random.default_rng(0).uniform(-1, 1, (2, 32, 32, 1)).astype(np.float32)
  assert tr.translate(x, "xy", style=ref).shape == (2, 32, 32, 1)
  res = helpers.evaluate_small(str(tmp_path / "a"))
  assert {"modality_purity", "modality_nmi", "class_consistency_xy"} <= set(res["scalars"])
  assert 0.1 <= res["scalars"]["modality_purity"] <= 1.0
  assert os.path.isfile(os.path.join(res["output_dir"], res["figures"]["modalities"]))
  assert any(k.startswith("noise_") for k in res["scalars"])   # references vary the output


@pytest.mark.parametrize("kw,needles", [
    (dict(batch_weight="two_sided"), ("--batch_weight", "('none',)")),
    (dict(noise_dim=1), ("--noise_dim", ">= 2")),
    (dict(channels_x=3), ("--channels_y", "3 and 1")),
    (dict(clusters=0), ("--clusters", ">= 1")),
    (dict(cluster_draws=4, clusters=8), ("--cluster_draws", "--bank_size=16")),
    (dict(cluster_draws=20, clusters=30), ("--cluster_draws", "--clusters=30")),
])
def test_refusals_are_one_line(kw, needles):
  with pytest.raises(ConfigError) as e:
    methods.build("balagan", **kw)
  helpers.one_line(e, *needles)
