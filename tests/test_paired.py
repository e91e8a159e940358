"""The paired methods on paired data (`--pairing=same_draw`). pix2pix: the U-Net and the
conditional PatchGAN, dropout as its noise, its losses against references, one device
against two, a tiny paired run that resumes exactly, translates and evaluates, and the
one-line refusals. BiCycleGAN: the encoder, its cVAE-GAN and cLR-GAN terms against
references, one device against two, a resumed run, the code as its noise, refusals."""

import dataclasses
import os

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import helpers
from jdbw import data, inference, losses, methods, train
from jdbw.errors import ConfigError
from jdbw.methods import bicyclegan as bcg
from jdbw.methods import pix2pix as p2p
from jdbw.methods.cyclegan import Runner
from jdbw.nets import cyclegan as nets_cg
from jdbw.nets import pix2pix as nets_p2p

TINY = dict(ngf=4, ndf=4, reverse=True)   # test_golden's


def _batch(d_steps=1, b=4, seed=0):
  rng = np.random.default_rng(seed)
  return {k: rng.uniform(-1, 1, (d_steps + 1, b, 32, 32, 1)).astype(np.float32)
          for k in ("x", "y")}


def _convs(params):
  return {k: v for k, v in params.items() if k.startswith("Conv")}


def test_unet_and_conditional_patchgan_shapes():
  key, keys = jax.random.PRNGKey(0), jnp.zeros((2, 2), jnp.uint32)
  x = jnp.zeros((2, 32, 32, 1))
  g = nets_p2p.UnetGenerator(3, ngf=8, n_down=5)
  v = g.init(key, x, keys)
  chex.assert_shape(g.apply(v, x, keys, train=False), (2, 32, 32, 3))
  convs = _convs(v["params"])
  assert len(convs) == 10 and [k for k, p in convs.items() if "bias" in p] == ["Conv_9"]
  # Down to 1x1: the innermost level has 8 ngf; the last up-sampling sees ngf + ngf.
  assert convs["Conv_4"]["kernel"].shape == (4, 4, 64, 64)
  assert convs["Conv_9"]["kernel"].shape == (4, 4, 16, 3)
  assert len(v["batch_stats"]) == 3 + 4   # no norm: outermost down, innermost down, outermost up
  # The reference's unet_256 and 70x70 PatchGAN (30x30 patch scores at 256x256).
  big, big_keys = jnp.zeros((1, 256, 256, 3)), jnp.zeros((1, 2), jnp.uint32)
  g8 = nets_p2p.UnetGenerator(3, ngf=64, n_down=8)
  shapes = jax.eval_shape(lambda: g8.init(key, big, big_keys))
  assert len(_convs(shapes["params"])) == 16
  chex.assert_shape(jax.eval_shape(lambda: g8.apply(g8.init(key, big, big_keys), big,
                                                    big_keys, train=False)), (1, 256, 256, 3))
  d3 = nets_cg.PatchDiscriminator(ndf=64, n_layers=3, norm="bn")
  pair = jnp.zeros((1, 256, 256, 6))
  chex.assert_shape(jax.eval_shape(lambda: d3.apply(d3.init(key, pair), pair, train=False)),
                    (1, 30, 30))


def test_dropout_is_the_noise_and_each_samples_own():
  m = p2p.Pix2Pix(p2p.Pix2PixConfig(ngf=4, ndf=4))
  state = jax.jit(m.init_state)(jax.random.PRNGKey(0))
  images = jnp.asarray(_batch()["x"][0])
  z = jax.random.normal(jax.random.PRNGKey(1), (4, 8))
  tr = jax.jit(m.translate, static_argnums=4)
  a, b = tr(state.params, state.spectral, images, z, "xy"), tr(state.params, state.spectral,
                                                               images, z[::-1], "xy")
  np.testing.assert_array_equal(a, tr(state.params, state.spectral, images, z, "xy"))
  assert float(jnp.abs(a - b).max()) > 1e-3            # other noise, other masks
  # A sample's translation is its own: the same in any batch (running batch norm).
  np.testing.assert_allclose(tr(state.params, state.spectral, images[1:2], z[1:2], "xy"),
                             a[1:2], rtol=1e-5, atol=1e-6)
  still = p2p.Pix2Pix(p2p.Pix2PixConfig(ngf=4, ndf=4, dropout_levels=0))
  s0 = jax.jit(still.init_state)(jax.random.PRNGKey(0))
  np.testing.assert_array_equal(still.translate(s0.params, s0.spectral, images, z, "xy"),
                                still.translate(s0.params, s0.spectral, images, z[::-1], "xy"))


def _generator_step(m):
  """(metrics of one generator step from a fresh state, a Runner of that state's
  networks, the batch, the step's key): what a loss check recomputes the terms from."""
  state = jax.jit(m.init_state)(jax.random.PRNGKey(0))
  batch = jax.tree.map(lambda a: jnp.asarray(a[0]), _batch())
  rng = jax.random.PRNGKey(5)
  _, (metrics, _) = jax.jit(m.generator_step)(state, batch, rng)
  return metrics, Runner(m, state.params, state.spectral, None, train=True), batch, rng


def test_losses_are_the_references():
  logits = np.array([[-3.0, 0.0], [2.0, 40.0]], np.float32)
  sig = 1 / (1 + np.exp(-logits.astype(np.float64)))
  np.testing.assert_allclose(losses.bce_per_sample(jnp.asarray(logits), 1.0),
                             np.mean(-np.log(np.maximum(sig, 1e-300)), -1), rtol=1e-6)
  np.testing.assert_allclose(losses.bce_per_sample(jnp.asarray(logits), 0.0),
                             [np.mean(-np.log(1 - sig[0])), np.mean([-np.log(1 - sig[1, 0]), 40.0])],
                             rtol=1e-6)
  # The generator step's terms, recomputed from its pieces: BCE(D(x, G(x)), 1) and
  # λ |G(x) − y|, each direction with its own dropout keys.
  m = p2p.Pix2Pix(p2p.Pix2PixConfig(**TINY))
  metrics, run, batch, rng = _generator_step(m)
  adv = l1 = 0.0
  for k, d in enumerate(("xy", "yx")):
    src, tgt = batch[d[0]], batch[d[1]]
    fake = run("G", f"G_{d}", src, p2p.sample_keys(jax.random.fold_in(rng, k), 4))
    score = run("D", f"D_{d[1]}", jnp.concatenate([src, fake], -1))
    adv += float(jnp.mean(jax.nn.softplus(-score)))
    l1 += 100.0 * float(jnp.mean(jnp.abs(fake - tgt)))
  np.testing.assert_allclose([metrics["g/adv"], metrics["g/l1"]], [adv, l1], rtol=1e-4)


@pytest.mark.parametrize("name,kw", [("pix2pix", TINY), ("bicyclegan", dict(
    ngf=4, ndf=4, nef=4, reverse=True))])
def test_devices_match_one_device(name, kw):
  """Under shard_map (the default wrapper; pmap runs the same step code and is checked
  on JD's default variant, tests/test_train.py)."""
  m = methods.build(name, **kw)
  state = jax.jit(m.init_state)(jax.random.PRNGKey(0))
  for (ref_state, ref_metrics, _), (got_state, got_metrics, _) in (
      helpers.iterations_across_devices(m, state, _batch(), ("shard_map",))):
    chex.assert_trees_all_close(got_metrics, ref_metrics, rtol=2e-4, atol=1e-6)
    chex.assert_trees_all_close(got_state.opt_state, ref_state.opt_state, rtol=2e-3, atol=1e-6)
    chex.assert_trees_all_close(got_state.params, ref_state.params, rtol=1e-4,
                                atol=2 * m.config.lr)
    chex.assert_trees_all_close(got_state.spectral, ref_state.spectral, rtol=1e-4, atol=1e-5)


def _specs():
  return {"x": data.DomainSpec(source="digits", name="x"),
          "y": data.DomainSpec(source="digits", classes="0:0.5", transform="sr", name="y")}


def _resumes_exactly(m, tmp_path, steps, figure_every=0):
  """A paired run of `steps - 1` steps resumed to `steps` ends where a straight run of
  `steps` does, bit for bit; returns the resumed run's workdir."""
  run = train.RunConfig(workdir=str(tmp_path / "a"), steps=steps - 1, batch_size=8,
                        checkpoint_every=1, figure_every=figure_every, log_every=1,
                        pairing="same_draw")
  train.train(m, run, _specs())
  resumed = train.train(m, dataclasses.replace(run, steps=steps), _specs())
  straight = train.train(m, dataclasses.replace(run, steps=steps, workdir=str(tmp_path / "b"),
                                                figure_every=0), _specs())
  chex.assert_trees_all_equal(jax.device_get(resumed), jax.device_get(straight))
  return tmp_path / "a"


def test_a_paired_run_resumes_exactly_translates_and_evaluates(tmp_path):
  m = methods.build("pix2pix", **TINY)
  _resumes_exactly(m, tmp_path, 3, figure_every=3)
  figures = sorted(p.name for p in (tmp_path / "a" / "figures").iterdir())
  assert "figure2_transfer.png" in figures and "figure4_noise.png" in figures
  tr = inference.Translator.from_workdir(str(tmp_path / "a"))
  assert isinstance(tr.method, p2p.Pix2Pix) and tr.method.directions == ("xy", "yx")
  out = tr.translate(np.zeros((2, 32, 32, 1), np.float32), "yx", seed=1)
  assert out.shape == (2, 32, 32, 1)
  from jdbw.evaluation import classifier, evaluator, report
  cfg = evaluator.EvalConfig(samples=100, batch_size=100, noise_sources=10, noise_draws=2,
                             classifier_dir=helpers.shared_classifier_dir(),
                             min_classifier_accuracy=0.5)
  res = report.evaluate_workdir(str(tmp_path / "a"), cfg, classifier_config=(
      classifier.ClassifierConfig(**helpers.DIGITS_CLASSIFIER)))
  assert {"class_consistency_xy", "class_consistency_yx"} <= set(res["scalars"])
  assert any(k.startswith("noise_") for k in res["scalars"])   # dropout is its noise


def test_refusals_are_one_line(tmp_path, monkeypatch):
  def refuse(*a, **k):
    raise AssertionError("compiled before the refusal")
  monkeypatch.setattr(train, "compile_iteration", refuse)
  m = methods.build("pix2pix", **TINY)
  with pytest.raises(ConfigError) as e:   # unpaired data
    train.train(m, train.RunConfig(workdir=str(tmp_path), steps=1, batch_size=4), _specs())
  helpers.one_line(e, "--pairing", "pix2pix trains on pairs", "same_draw")
  for kw, needles in ((dict(resolution=48), ("--resolution", "power of 2")),
                      (dict(dropout_levels=4), ("--dropout_levels", "0 to 3")),
                      (dict(noise_dim=1), ("--noise_dim", ">= 2")),
                      (dict(batch_weight="two_sided"), ("--batch_weight", "('none',)")),
                      (dict(l1_weight=-1.0), ("--l1_weight",))):
    with pytest.raises(ConfigError) as e:
      methods.build("pix2pix", **kw)
    helpers.one_line(e, *needles)


BC_TINY = dict(ngf=4, ndf=4, nef=4, reverse=True)   # test_golden's


def test_encoder_and_generator_shapes_and_names():
  key = jax.random.PRNGKey(0)
  e = nets_p2p.ResNetEncoder(nz=8, nef=8, n_blocks=2)
  x = jnp.zeros((2, 32, 32, 1))
  mu, logvar = e.apply(e.init(key, x), x)
  chex.assert_shape([mu, logvar], (2, 8))
  big = jnp.zeros((1, 256, 256, 3))   # the reference's resnet_256: 5 blocks, 8x8 pooled
  e5 = nets_p2p.ResNetEncoder(nz=8, nef=64, n_blocks=5)
  shapes = jax.eval_shape(lambda: e5.init(key, big))["params"]
  assert shapes["Conv_12"]["kernel"].shape == (1, 1, 256, 256)   # the last shortcut
  m = bcg.BiCycleGAN(bcg.BiCycleGANConfig(**BC_TINY))
  state = jax.eval_shape(m.init_state, key)
  assert sorted(state.params["G"]) == ["E_x", "E_y", "G_xy", "G_yx"]
  assert sorted(state.params["D"]) == ["D2_x", "D2_y", "D_x", "D_y"]
  # G reads x with the code tiled over its grid: 1 + 8 input channels.
  assert state.params["G"]["G_xy"]["Conv_0"]["kernel"].shape == (4, 4, 9, 4)


def test_multi_scale_patchgan_is_the_references():
  """`--d_scales=2` (the reference's num_Ds): the second PatchGAN, of half the width,
  scores the image average-pooled by 3x3/2 with its zero padding not counted (numpy
  here); both D and D2 of the method get the two scales, and the iteration's losses take
  the list of maps."""
  d = nets_p2p.MultiScalePatchDiscriminator(ndf=6, n_layers=2, scales=2)
  x = jax.random.normal(jax.random.PRNGKey(1), (2, 32, 32, 1))
  params = d.init(jax.random.PRNGKey(0), x)["params"]
  first, second = d.apply({"params": params}, x)
  chex.assert_shape([first, second], [(2, 6, 6), (2, 2, 2)])
  assert params["PatchDiscriminator_1"]["Conv_0"]["kernel"].shape == (4, 4, 1, 3)
  padded = np.pad(np.asarray(x, np.float64), ((0, 0), (1, 1), (1, 1), (0, 0)))
  ones = np.pad(np.ones((32, 32)), 1)
  pooled = np.zeros((2, 16, 16, 1))
  for i in range(16):
    for j in range(16):
      win = np.s_[2 * i:2 * i + 3, 2 * j:2 * j + 3]
      pooled[:, i, j] = padded[:, win[0], win[1]].sum((1, 2)) / ones[win].sum()
  single = nets_cg.PatchDiscriminator(3, 2)
  np.testing.assert_allclose(
      second, single.apply({"params": params["PatchDiscriminator_1"]}, jnp.asarray(pooled)),
      rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(
      first, nets_cg.PatchDiscriminator(6, 2).apply({"params": params["PatchDiscriminator_0"]},
                                                    x), rtol=1e-5, atol=1e-6)
  m = bcg.BiCycleGAN(bcg.BiCycleGANConfig(**{**BC_TINY, "d_scales": 2}))
  state = jax.eval_shape(m.init_state, jax.random.PRNGKey(0))
  for name in ("D_x", "D_y", "D2_x", "D2_y"):
    assert sorted(state.params["D"][name]) == ["PatchDiscriminator_0", "PatchDiscriminator_1"]
  _, metrics, _ = jax.eval_shape(m.iteration, state, jax.tree.map(jnp.asarray, _batch()))
  assert metrics["g/adv"].shape == () and metrics["d/loss"].shape == ()


def test_bicyclegan_terms_are_the_references():
  """The generator step's terms from their pieces: LSGAN of D on G(A1, z_e) and of D2 on
  G(A1, z_r), λ_L1 |G(A1, z_e) − B1|, λ_KL · −½ Σ(1 + logvar − mu² − e^logvar) and
  λ_latent |mu(E(G(A1, z_r))) − z_r|, the halves being the even and odd samples."""
  m = bcg.BiCycleGAN(bcg.BiCycleGANConfig(**BC_TINY))
  metrics, run, batch, rng = _generator_step(m)
  want = dict(adv=0.0, l1=0.0, kl=0.0, latent=0.0)
  for k, d in enumerate(("xy", "yx")):
    a1, b1 = batch[d[0]][0::2], batch[d[1]][0::2]
    key = jax.random.fold_in(rng, k)
    mu, logvar = run("G", f"E_{d[1]}", b1)
    eps = jnp.stack([jax.random.normal(jax.random.fold_in(jax.random.fold_in(key, 0), i), (8,))
                     for i in range(2)])
    z_r = jnp.stack([jax.random.normal(jax.random.fold_in(jax.random.fold_in(key, 1), i), (8,))
                     for i in range(2)])
    fake_e = m.generate(run, d, a1, mu + eps * jnp.exp(0.5 * logvar))
    fake_r = m.generate(run, d, a1, z_r)
    want["adv"] += float(jnp.mean(jnp.square(run("D", f"D_{d[1]}", fake_e) - 1))
                         + jnp.mean(jnp.square(run("D", f"D2_{d[1]}", fake_r) - 1)))
    want["l1"] += 10 * float(jnp.mean(jnp.abs(fake_e - b1)))
    mu_np, lv_np = np.asarray(mu, np.float64), np.asarray(logvar, np.float64)
    want["kl"] += -0.5 * 0.01 * float(np.sum(1 + lv_np - mu_np ** 2 - np.exp(lv_np)))
    want["latent"] += 0.5 * float(jnp.mean(jnp.abs(run("G", f"E_{d[1]}", fake_r)[0] - z_r)))
  got = {k: float(metrics[f"g/{k}"]) for k in want}
  np.testing.assert_allclose([got[k] for k in want], list(want.values()), rtol=1e-4, atol=1e-7)


def test_a_bicyclegan_run_resumes_exactly_and_its_code_is_the_noise(tmp_path):
  m = methods.build("bicyclegan", **BC_TINY)
  _resumes_exactly(m, tmp_path, 2)
  tr = inference.Translator.from_workdir(str(tmp_path / "a"))
  x = np.asarray(_batch()["x"][0, :2])
  a, b = tr.translate(x, "xy", seed=1), tr.translate(x, "xy", seed=2)
  np.testing.assert_array_equal(a, tr.translate(x, "xy", seed=1))
  assert a.shape == (2, 32, 32, 1) and float(np.abs(a - b).max()) > 1e-4
  # A reference Y image's code (E's mean) instead of noise: the translation of its
  # noise, one code for every input or one each; a wrong shape is one line.
  y = np.asarray(_batch()["y"][0, :2])
  noise = np.asarray(tr._encode(jnp.asarray(y), "xy"))
  np.testing.assert_allclose(tr.translate(x, "xy", style=y), tr.translate(x, "xy", noise=noise),
                             rtol=1e-5, atol=1e-6)
  one = tr.translate(x, "xy", style=y[0])
  np.testing.assert_allclose(one, tr.translate(x, "xy", noise=np.repeat(noise[:1], 2, 0)),
                             rtol=1e-5, atol=1e-6)
  with pytest.raises(ConfigError) as e:
    tr.translate(x, "xy", style=np.zeros((3, 32, 32, 1), np.float32))
  helpers.one_line(e, "--style_image", "(3, 32, 32, 1)")


def test_bicyclegan_refusals_are_one_line(tmp_path, monkeypatch):
  with pytest.raises(ConfigError) as e:
    methods.build("bicyclegan", resolution=8, dis_layers=1)
  helpers.one_line(e, "--resolution", "at least 16")
  with pytest.raises(ConfigError) as e:
    methods.build("bicyclegan", kl_weight=-1.0)
  helpers.one_line(e, "--kl_weight")
  with pytest.raises(ConfigError) as e:
    methods.build("bicyclegan", d_scales=2, dis_layers=3)
  helpers.one_line(e, "--d_scales", "at least 64")
  m = methods.build("bicyclegan", **BC_TINY)
  with pytest.raises(ConfigError) as e:   # an odd batch per device cannot be halved
    jax.eval_shape(m.generator_step, jax.eval_shape(m.init_state, jax.random.PRNGKey(0)),
                   jax.tree.map(lambda a: jnp.asarray(a[0, :3]), _batch()), jax.random.PRNGKey(1))
  helpers.one_line(e, "--batch_size", "even")
  monkeypatch.setattr(train, "compile_iteration", lambda *a, **k: 1 / 0)
  with pytest.raises(ConfigError) as e:
    train.train(m, train.RunConfig(workdir=str(tmp_path), steps=1, batch_size=4), _specs())
  helpers.one_line(e, "--pairing", "bicyclegan trains on pairs")


def test_both_paired_methods_train_at_128_from_aligned_folders(tmp_path, monkeypatch):
  """The paired Edges -> Shoes setting at 128x128 (edges_shoes_paired.flags, at tiny
  widths): pix2pix trains from the halves of A|B files, BiCycleGAN (with the reference's
  two-scale D and D2) from two folders whose files pair by name (each Y image is its X
  image inverted); both folders made here from real Fashion-MNIST shoes and bags. Every
  network moves; the pairs are the files' own (a translation target of the wrong file
  would not be -x)."""
  import tensorflow as tf
  monkeypatch.setenv("JDBW_CACHE", str(tmp_path / "cache"))
  src = data.load_source("idx:/usr/share/datasets/fashion-mnist", "test")
  for name, cls in (("shoes", 7), ("bags", 8)):
    for i, k in enumerate(np.flatnonzero(src.labels == cls)[:4]):
      im = src.images[k]
      for path, img in ((f"ab/{name}/{i}.png", np.concatenate([im, 255 - im], 1)),
                        (f"edges/{name}/{i}.png", im), (f"photos/{name}/{i}.png", 255 - im)):
        os.makedirs(tmp_path / os.path.dirname(path), exist_ok=True)
        tf.io.write_file(str(tmp_path / path), tf.io.encode_png(tf.constant(img)))
  folder = lambda d, name, opts="": data.DomainSpec(
      source=f"folder:{tmp_path / d}:size=128,test_fraction=0{opts}", name=name)
  cases = {"pix2pix": (dict(ngf=2, ndf=2, dis_layers=3),
                       {"x": folder("ab", "x", ",half=left"), "y": folder("ab", "y", ",half=right")}),
           "bicyclegan": (dict(ngf=2, ndf=2, nef=2, dis_layers=3, d_scales=2),
                          {"x": folder("edges", "x"), "y": folder("photos", "y")})}
  for name, (kw, specs) in cases.items():
    domains = {k: data.load_domain(s) for k, s in specs.items()}
    batch = next(data.make_batches(domains, 4, seed=0, resolution=128, pairing="same_draw"))
    # Up to one grey level (2/255) apart: each file is resized 28 -> 128 with rounding.
    np.testing.assert_allclose(batch["y"]["image"], -batch["x"]["image"], atol=2.01 / 255)
    m = methods.build(name, resolution=128, **kw)
    run = train.RunConfig(workdir=str(tmp_path / name), steps=2, batch_size=4,
                          checkpoint_every=2, figure_every=0, log_every=1, pairing="same_draw")
    state = train.train(m, run, specs)
    assert int(state.step) == 2
    init = train.compiled_init(m)(jax.random.PRNGKey(run.seed))   # the run's own program
    for part in ("G", "D"):
      for net, params in state.params[part].items():
        assert not all(np.array_equal(a, b) for a, b in zip(
            jax.tree.leaves(init.params[part][net]), jax.tree.leaves(params))), (name, net)
