"""Evaluation: classifiers and their cache, the evaluator on known translators, the
workdir report, evaluation during training, the benchmark table."""

import dataclasses
import glob
import json
import os
import subprocess
import sys

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import helpers

from jdbw import batch_weight, data, inference, train
from jdbw import methods
from jdbw.methods import jd
from jdbw.errors import ConfigError
from jdbw.evaluation import classifier, evaluator, metrics, report


ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLF = classifier.ClassifierConfig(**helpers.DIGITS_CLASSIFIER)
TINY = dict(g_features=4, d_features=2, w_features=2, d_steps=1)
X = data.DomainSpec(source="digits", name="x")
Y = data.DomainSpec(source="digits", classes="0:0.5", transform="sr", name="y")


@pytest.fixture(scope="module")
def clf_dir():
  return helpers.shared_classifier_dir()


def _eval_config(clf_dir, **kw):
  return evaluator.EvalConfig(**{**dict(samples=400, batch_size=200, noise_sources=40,
                                        noise_draws=4, classifier_dir=clf_dir,
                                        min_classifier_accuracy=0.85), **kw})


def test_dataset_names_and_thresholds():
  name = lambda text: data.parse_source(text).dataset_name
  assert name("tfds:fashion_mnist:3.0.1") == "fashion_mnist"
  assert name("idx:/usr/share/datasets/fashion-mnist/") == "fashion_mnist"
  assert name("digits") == "digits"
  assert name("folder:/data/Edges-2-Shoes:size=64") == "edges_2_shoes"
  assert data.parse_source("folder:/data/a:b:size=64").arg == "/data/a:b"
  for bad in ("digits:3", "tfds:", "png:/data"):
    with pytest.raises(ConfigError) as e:
      data.parse_source(bad, "--source_y")
    helpers.one_line(e, "--source_y", repr(bad))
  assert classifier.threshold_for(data.DomainSpec(source="tfds:mnist")) == 0.98
  assert classifier.threshold_for(X, 0.5) == 0.5
  with pytest.raises(ConfigError, match="--min_classifier_accuracy"):
    classifier.threshold_for(data.DomainSpec(source="tfds:cifar10"))
  assert CLF.validate() is CLF
  with pytest.raises(ConfigError, match=r"^--classifier_train_draws: got 0; expected >= 1$"):
    classifier.ClassifierConfig(train_draws=0).validate()


def test_classifier_trains_caches_and_refuses_below_threshold(clf_dir):
  clf = classifier.load_or_train(X, clf_dir, config=CLF, min_accuracy=0.85)
  assert clf.info["test_accuracy"] >= 0.85
  logits, emb = jax.jit(clf.apply)(jnp.zeros((3, 32, 32, 1)))
  assert logits.shape == (3, 10) and emb.shape == (3, CLF.hidden)
  info_file = os.path.join(clf.info["cache"], "info.json")
  mtime = os.path.getmtime(info_file)
  # Another class skew of the same source and transform reuses the cached classifier.
  again = classifier.load_or_train(dataclasses.replace(X, classes="0:0.5", name="y"),
                                   clf_dir, config=CLF, min_accuracy=0.85)
  assert again.info["cache"] == clf.info["cache"] and os.path.getmtime(info_file) == mtime
  jax.tree.map(np.testing.assert_array_equal, again.params, jax.device_get(clf.params))
  with pytest.raises(ConfigError, match="below the threshold"):
    classifier.load_or_train(X, clf_dir, config=CLF, min_accuracy=0.9999)


class _Fake:
  """A test double with the evaluator's method interface and a chosen translator."""

  stochastic = True
  point_domains = False

  def __init__(self, translate_fn, logits_fn=None):
    self.config = jd.JDConfig(**TINY)
    self.directions = ("xy", "yx")
    self._tr, self._logits = translate_fn, logits_fn

  def translate(self, params, spectral, images, z, direction):
    return self._tr(images)

  def weight_logits(self, params, x, fx, fy, y):
    return {} if self._logits is None else self._logits(x, y)

  def normalise_weights(self, logits, n, step, axis_name=None):
    return batch_weight.normalise_two_sided(logits, "softmax", n, step, 0, 1000, axis_name)

  def modalities(self, params, images):
    return None


_STATE = methods.TrainState(step=jnp.zeros((), jnp.int32), rng=jax.random.PRNGKey(0),
                       params={}, spectral={}, opt_state={})


def _permuting_translator(ev):
  """Maps each evaluation image to an image of class + 1 (looked up by exact match)."""
  bank_imgs = np.concatenate([ev.sample["x"]["image"], ev.sample["y"]["image"]])
  bank_labels = np.concatenate([ev.sample["x"]["label"], ev.sample["y"]["label"]])
  flat = jnp.asarray(bank_imgs.reshape(len(bank_imgs), -1))
  labels = jnp.asarray(bank_labels)
  # A plain-transform representative of each class (what X's classifier knows best).
  reps = jnp.stack([ev.sample["x"]["image"][np.flatnonzero(ev.sample["x"]["label"] == k)[0]]
                    for k in range(10)])

  def translate(images):
    d = jnp.sum(jnp.square(images.reshape(len(images), -1)[:, None] - flat[None]), -1)
    return reps[(labels[jnp.argmin(d, 1)] + 1) % 10]
  return translate


def test_identity_scores_the_classifier_accuracy_and_permutation_scores_zero(clf_dir):
  specs = {"x": X, "y": dataclasses.replace(X, name="y")}   # a domain to itself
  ev = evaluator.Evaluator(_Fake(lambda im: im), specs, _eval_config(clf_dir),
                           classifier_config=CLF)
  res = ev(_STATE)
  own = res["classifier"]["x"]["eval_sample_accuracy"]
  assert res["class_consistency_xy"]["accuracy"] == pytest.approx(own)
  assert res["cycle_consistency_xyx"]["accuracy"] == pytest.approx(own)
  assert res["noise_xy"]["agreement"] == 1.0                 # no noise dependence
  # Unweighted method on identical domains: no mass shift, weighted = unweighted.
  wc = res["weight_calibration"]
  assert wc["tv_weighted"] == pytest.approx(wc["tv_unweighted"])
  perm = ev.for_method(_Fake(_permuting_translator(ev)))(_STATE)
  assert perm["class_consistency_xy"]["accuracy"] < 0.1
  assert perm["class_consistency_yx"]["accuracy"] < 0.1
  cm = np.asarray(perm["class_consistency_xy"]["confusion"])
  assert np.mean(np.argmax(cm, 1) == (np.arange(10) + 1) % 10) >= 0.9
  assert perm["fd_classifier_xy"] > res["fd_classifier_xy"]


def test_evaluator_weights_follow_the_method_normalisation(clf_dir):
  """Logits that up-weight X's over-represented class lower the weighted TV."""
  specs = {"x": dataclasses.replace(X, classes="0:0.5"), "y": dataclasses.replace(X, name="y")}
  ev = evaluator.Evaluator(_Fake(lambda im: im), specs, _eval_config(clf_dir),
                           classifier_config=CLF)
  lab = {s: jnp.asarray(ev.sample[s]["label"]) for s in ("x", "y")}
  imgs = {s: jnp.asarray(ev.sample[s]["image"].reshape(400, -1)) for s in ("x", "y")}

  def class_of(images, side):  # an oracle W: exact lookup of the sample's label
    d = jnp.sum(jnp.square(images.reshape(len(images), -1)[:, None] - imgs[side][None]), -1)
    return lab[side][jnp.argmin(d, 1)]

  def logits(x, y):  # log density ratio towards the midpoint, both sides
    ax = jnp.where(class_of(x, "x") == 0, -2.0, 0.5)
    ay = jnp.where(class_of(y, "y") == 0, 2.0, -0.5)
    return {"x": [ax, ax], "y": [ay, ay]}
  state = _STATE.replace(step=jnp.asarray(5000))   # clip t well above the logits
  wc = ev.for_method(_Fake(lambda im: im, logits)).calibration_at(state)
  assert wc["tv_unweighted"] > 0.25
  assert wc["tv_weighted"] < 0.6 * wc["tv_unweighted"]


@pytest.fixture(scope="module")
def tiny_workdir(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("run"))
  method = jd.JD(jd.JDConfig(**TINY))
  run = train.RunConfig(workdir=workdir, steps=4, batch_size=8, checkpoint_every=2,
                        log_every=2, figure_every=4)
  train.train(method, run, {"x": X, "y": Y})
  return workdir


def test_fid_and_kid_per_direction_and_per_class(tiny_workdir, clf_dir, tmp_path):
  """--eval_inception with a stand-in feature network: FID/KID of each direction's
  translations against the real target sample, and per class (translations of source
  class c against the target's real images of class c). metrics.json's copy: the test
  below."""
  from jdbw import inference
  from jdbw.evaluation import inception
  model = helpers.tiny_feature_model(tmp_path / "f.keras")
  cfg = _eval_config(clf_dir, inception=True, feature_model=model, kid_subset_size=100)
  method, state, _ = inference.load_run(tiny_workdir, 2)
  ev = evaluator.Evaluator(method, {"x": X, "y": Y}, cfg, classifier_config=CLF)
  a = ev.arrays(state, noise=False)
  res = ev.image_scores(a)
  net = inception.FeatureNet.from_path(model)
  np.testing.assert_allclose(ev.real_features["y"], net(ev.sample["y"]["image"]), rtol=1e-5)
  for d, src, tgt in (("xy", "x", "y"), ("yx", "y", "x")):
    r, real = res[f"inception_{d}"], ev.real_features[tgt]
    assert r["fid"] == pytest.approx(metrics.fd_classifier(a[f"features_{d}"], real))
    assert r["n_fake"] == r["n_real"] == 400 and np.isfinite(r["kid"])
    lab_s, lab_t = ev.sample[src]["label"], ev.sample[tgt]["label"]
    c = 3
    assert r["classes"][c]["n_fake"] == np.sum(lab_s == c)
    assert r["classes"][c]["n_real"] == np.sum(lab_t == c)
    assert r["classes"][c]["fid"] == pytest.approx(metrics.fd_classifier(
        a[f"features_{d}"][lab_s == c], real[lab_t == c]))
  sc = evaluator.scalars(res)
  assert sc["fid_xy"] == res["inception_xy"]["fid"] and sc["kid_yx"] == res["inception_yx"]["kid"]


def test_evaluate_workdir_writes_metrics_report_and_figures(tiny_workdir, clf_dir, tmp_path):
  cfg = _eval_config(clf_dir, inception=True, kid_subset_size=100,
                     feature_model=helpers.tiny_feature_model(tmp_path / "f.keras"))
  res = report.evaluate_workdir(tiny_workdir, cfg, classifier_config=CLF)
  with open(os.path.join(tiny_workdir, "metrics.json")) as f:
    saved = json.load(f)
  assert saved["step"] == 4 and res["mode_class"] == 0
  for key in ("class_consistency_xy", "class_consistency_yx", "cycle_consistency_xyx",
              "hallucination_xy", "noise_yx", "fd_classifier_xy", "tv_weighted", "fid_xy",
              "kid_yx"):
    assert key in saved["scalars"] or any(k.startswith(key) for k in saved["scalars"])
  assert [c["step"] for c in saved["weight_calibration_per_checkpoint"]] == [2, 4]
  per_class = saved["inception_xy"]["classes"]   # source class c against target class c
  assert sum(v["n_fake"] for v in per_class.values()) == 400 and len(per_class) == 10
  wc = saved["weight_calibration"]
  assert wc["tv_unweighted"] == pytest.approx(
      metrics.total_variation(wc["hist_x_unweighted"], wc["hist_y_unweighted"]))
  text = open(os.path.join(tiny_workdir, "report.md")).read()
  for png in ("confusion.png", "weight_calibration.png", "figure2_transfer.png"):
    assert png in text and os.path.isfile(os.path.join(tiny_workdir, "figures", png))


def test_evaluating_an_older_step_leaves_the_runs_metrics_alone(tiny_workdir, clf_dir):
  cfg = _eval_config(clf_dir)
  latest = report.evaluate_workdir(tiny_workdir, cfg, classifier_config=CLF,
                                   every_checkpoint=False)
  assert latest["output_dir"] == os.path.abspath(tiny_workdir)
  with open(os.path.join(tiny_workdir, "metrics.json")) as f:
    before = f.read()
  old = report.evaluate_workdir(tiny_workdir, cfg, step=2, classifier_config=CLF,
                                every_checkpoint=False)
  out = os.path.join(tiny_workdir, "evaluations", "step_2")
  assert old["output_dir"] == os.path.abspath(out) and old["step"] == 2
  with open(os.path.join(tiny_workdir, "metrics.json")) as f:
    assert f.read() == before and json.loads(before)["step"] == 4
  with open(os.path.join(out, "metrics.json")) as f:
    assert json.load(f)["step"] == 2
  text = open(os.path.join(out, "report.md")).read()
  assert "checkpoint step 2" in text
  for rel in old["figures"].values():   # links resolve inside the step's folder
    assert os.path.isfile(os.path.join(out, rel)) and rel in text


def test_weights_only_matches_the_full_evaluation_and_leaves_metrics_alone(tiny_workdir,
                                                                          clf_dir):
  cfg = _eval_config(clf_dir)
  full = report.evaluate_workdir(tiny_workdir, cfg, classifier_config=CLF,
                                 every_checkpoint=False)["weight_calibration"]
  mtime = os.path.getmtime(os.path.join(tiny_workdir, "metrics.json"))
  only = report.weights_workdir(tiny_workdir, cfg)
  for k in ("mean_weight_x", "mean_weight_y", "tv_weighted", "mode_margin_x"):
    np.testing.assert_allclose(only[k], full[k], rtol=1e-5, atol=1e-6)
  assert os.path.getmtime(os.path.join(tiny_workdir, "metrics.json")) == mtime
  with open(only["path"]) as f:
    saved = json.load(f)
  assert saved["step"] == 4 and saved["split"] == cfg.split
  assert "X weight" in report.weights_table(only)


def test_evaluation_during_training_goes_to_tensorboard(tmp_path, clf_dir):
  method = jd.JD(jd.JDConfig(**TINY))
  ev = evaluator.Evaluator(method, {"x": X, "y": Y}, _eval_config(clf_dir),
                           classifier_config=CLF)
  calls = []

  def evaluate(state):
    calls.append(int(state.step))
    return evaluator.scalars(ev(state))
  run = train.RunConfig(workdir=str(tmp_path), steps=3, batch_size=8, eval_every=2,
                        log_every=1)
  train.train(method, run, {"x": X, "y": Y}, evaluate=evaluate)
  assert calls == [2, 3]
  import tensorflow as tf
  steps = {}
  for path in glob.glob(str(tmp_path / "tb" / "events.*")):
    for event in tf.compat.v1.train.summary_iterator(path):
      for v in event.summary.value:
        steps.setdefault(v.tag, []).append(event.step)
  assert "eval/class_consistency_xy" in steps
  assert steps["eval/tv_weighted"] == [2, 3]


def test_summarise_mean_std_and_nan():
  rows = report.summarise({"a": [{"m": 1.0}, {"m": 3.0}], "b": [{"m": float("nan")}, {"m": 2.0}]})
  got = {r["variant"]: r for r in rows}
  assert got["a"]["mean"] == 2.0 and got["a"]["std"] == pytest.approx(np.sqrt(2.0))
  assert got["b"]["n"] == 1 and got["b"]["mean"] == 2.0 and got["b"]["std"] == 0.0
  md = report.summary_markdown(rows, {"a": "A", "b": "B"}, [0, 1])
  assert "| m | 2.000 ± 1.414 | 2.000 ± 0.000 |" in md
  # A variant without a metric (one-sided JD has no G_yx): its cell is empty, not made up.
  rows = report.summarise({"jd_bw": [{"xy": 0.5, "yx": 0.25}], "one_sided": [{"xy": 0.75}]})
  md = report.summary_markdown(rows, {"jd_bw": "A", "one_sided": "B"}, [0])
  assert "| yx | 0.250 ± 0.000 | — |" in md and "| xy | 0.500 ± 0.000 | 0.750 ± 0.000 |" in md


def _run(module, *args, timeout=900):
  env = {**os.environ, "XLA_FLAGS": helpers.xla_flags(), "TF_CPP_MIN_LOG_LEVEL": "2"}
  return subprocess.run([sys.executable, "-m", module, *args], cwd=ROOT, env=env,
                        capture_output=True, text=True, timeout=timeout)


def test_evaluate_cli_bad_workdir_is_one_line(tmp_path):
  p = _run("experiments.evaluate", f"--workdir={tmp_path}/missing", timeout=120)
  assert p.returncode == 2
  assert p.stderr.strip().splitlines()[-1].startswith("error: --workdir:")


def _bad_input(path, **kw):
  kw = {"channels": 1, "resolution": 32, "points": False, **kw}
  with pytest.raises(ConfigError) as e:
    inference.prepare_input(inference.load_input(str(path)), str(path), **kw)
  return e


def test_translate_refuses_bad_inputs_in_one_line(tmp_path):
  (tmp_path / "empty.npy").write_bytes(b"")
  helpers.one_line(_bad_input(tmp_path / "empty.npy"), "--input", "is empty")
  (tmp_path / "text.png").write_text("not an image")
  helpers.one_line(_bad_input(tmp_path / "text.png"), "--input", "not a decodable image")
  (tmp_path / "text.npy").write_text("not an array")
  helpers.one_line(_bad_input(tmp_path / "text.npy"), "--input", "not a .npy file")
  (tmp_path / "random.npy").write_bytes(bytes(range(256)) * 8)   # not "pickled data"
  helpers.one_line(_bad_input(tmp_path / "random.npy"), "--input", "no NumPy header")
  np.save(tmp_path / "none.npy", np.zeros((0, 32, 32, 1), np.float32))
  helpers.one_line(_bad_input(tmp_path / "none.npy"), "--input", "holds no values")
  nan = np.zeros((2, 32, 32, 1), np.float32)
  nan[1, 3, 4] = np.nan
  np.save(tmp_path / "nan.npy", nan)
  helpers.one_line(_bad_input(tmp_path / "nan.npy"), "1 non-finite values")
  helpers.one_line(_bad_input(tmp_path / "nan.npy", points=True), "non-finite")
  u8 = np.full((2, 32, 32, 1), 255, np.uint8)
  np.save(tmp_path / "u8.npy", u8)
  helpers.one_line(_bad_input(tmp_path / "u8.npy"), "values in [255, 255]",
                   "--input_range=0,255")
  scaled = inference.prepare_input(u8, "u8.npy", channels=1, resolution=32, points=False,
                             value_range=inference.parse_range("0,255"))
  np.testing.assert_array_equal(scaled, np.ones_like(scaled))
  with pytest.raises(ConfigError, match="--input_range"):
    inference.parse_range("255,0")


def test_translate_cli(tiny_workdir, tmp_path):
  """The entrypoint end to end: a missing output folder is refused before any work; a
  uint8 array with --input_range=0,255 translates; the library refuses NaN."""
  np.save(tmp_path / "u8.npy", np.random.default_rng(0).integers(0, 256, (3, 32, 32, 1),
                                                                  dtype=np.uint8))
  args = [f"--workdir={tiny_workdir}", f"--input={tmp_path}/u8.npy", "--direction=yx"]
  p = _run("experiments.translate", *args, f"--output={tmp_path}/no/out.npy", timeout=300)
  assert p.returncode == 2
  assert p.stderr.strip().splitlines()[-1] == (
      f"error: --output: the folder {tmp_path}/no does not exist")
  p = _run("experiments.translate", *args, f"--output={tmp_path}/out.npy",
           "--input_range=0,255", timeout=300)
  assert p.returncode == 0, p.stderr[-2000:]
  out = np.load(tmp_path / "out.npy")
  chex.assert_shape(out, (3, 32, 32, 1))
  assert np.isfinite(out).all() and np.abs(out).max() <= 1
  tr = inference.Translator.from_workdir(tiny_workdir)
  with pytest.raises(ConfigError, match="non-finite"):
    tr.translate(np.full((32, 32, 1), np.nan, np.float32), "xy")
  with pytest.raises(ConfigError, match=r"expected \[-1, 1\]"):
    tr.translate(np.full((32, 32, 1), 255.0, np.float32), "xy")
  with pytest.raises(ConfigError) as e:    # the array's own shape, not "()"
    tr.translate(np.zeros(5, np.float32), "xy")
  helpers.one_line(e, "an array of shape (5,)", "expected one example of shape (32, 32, 1)")
  with pytest.raises(ConfigError) as e:   # JD draws its noise; it reads no style off an image
    tr.translate(np.zeros((32, 32, 1), np.float32), "xy", style=np.zeros((32, 32, 1)))
  helpers.one_line(e, "--style_image", "jd reads no style", "munit, bicyclegan, balagan")


def _picture(path, size, mode="L", fmt="PNG", seed=0):
  from PIL import Image
  rng = np.random.default_rng(seed)
  shape = (size[1], size[0]) + (() if mode == "L" else (3,))
  os.makedirs(os.path.dirname(path), exist_ok=True)
  Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode).save(path, fmt)


def test_a_folder_of_pngs_and_jpegs_translates_at_their_sizes(tiny_workdir, tmp_path):
  """Files of any size and format, recursively, batched: each output at its input's
  size with --keep_size, N samples per input that differ (JD is stochastic) and do not
  depend on the batch size, an undecodable file skipped and counted; then the CLI on the
  same folder writes the same relative paths."""
  src = tmp_path / "in"
  _picture(f"{src}/a.png", (40, 24))
  _picture(f"{src}/deep/b.jpg", (20, 50), "RGB", "JPEG")
  _picture(f"{src}/deep/c.jpeg", (32, 32), "L", "JPEG")
  (src / "deep" / "broken.png").write_text("not an image")
  paths = [os.path.join(src, r) for r in inference.image_paths(str(src))]
  assert [os.path.relpath(p, src) for p in paths] == [
      "a.png", "deep/b.jpg", "deep/broken.png", "deep/c.jpeg"]
  tr = inference.Translator.from_workdir(tiny_workdir)
  done, skipped = tr.translate_files(paths, "xy", keep_size=True, samples=2, batch_size=2)
  assert skipped == [str(src / "deep" / "broken.png")]
  assert {os.path.relpath(p, src): [i.size for i in v] for p, v in done.items()} == {
      "a.png": [(40, 24)] * 2, "deep/b.jpg": [(20, 50)] * 2, "deep/c.jpeg": [(32, 32)] * 2}
  a0, a1 = (np.asarray(i) for i in done[paths[0]])
  assert a0.shape == (24, 40) and np.abs(a0.astype(int) - a1).max() > 0   # two samples
  again, _ = tr.translate_files(paths, "xy", samples=2, batch_size=3)
  for p in done:   # the noise is keyed by (seed, input, sample), not by the batch
    np.testing.assert_array_equal(np.asarray(again[p][1]), np.asarray(
        tr.translate_files([p] if p == paths[0] else paths, "xy", samples=2)[0][p][1]))
  cropped, _ = tr.translate_files(paths[:1], "xy", fit="crop", keep_size=True)
  assert cropped[paths[0]][0].size == (24, 24)     # the centre square, at its size
  with pytest.raises(ConfigError, match="--fit"):
    tr.translate_files(paths, "xy", fit="pad")
  out = tmp_path / "out"
  p = _run("experiments.translate", f"--workdir={tiny_workdir}", f"--input={src}",
           f"--output={out}", "--keep_size", "--samples=2", timeout=300)
  assert p.returncode == 0, p.stderr[-2000:]
  written = sorted(str(q.relative_to(out)) for q in out.rglob("*") if q.is_file())
  assert written == ["a_0.png", "a_1.png", "deep/b_0.jpg", "deep/b_1.jpg", "deep/c_0.jpeg",
                     "deep/c_1.jpeg"]
  from PIL import Image
  assert Image.open(out / "deep" / "b_1.jpg").size == (20, 50)
  assert "skipped 1 undecodable file(s) of 4" in p.stderr


_LOAD_EXPORTS = """
import sys, numpy as np
x, z = np.load(sys.argv[3]), np.load(sys.argv[4])
if sys.argv[1] == "stablehlo":
  import jax
  out = jax.export.deserialize(open(sys.argv[2], "rb").read()).call(x, z)
else:
  import tensorflow as tf
  out = tf.saved_model.load(sys.argv[2]).translate(x, z).numpy()
assert not any(m.startswith("jdbw") for m in sys.modules), "imported jdbw"
np.save(sys.argv[5], np.asarray(out))
"""


def test_exports_reproduce_the_translator_in_a_fresh_process(tiny_workdir, tmp_path):
  """StableHLO (jax.export) and a SavedModel (jax2tf), each loaded in a fresh process
  without jdbw, at a batch size other than any seen before (the batch is symbolic), give
  the Translator's output for the same images and noise."""
  from jdbw import export
  tr = inference.Translator.from_workdir(tiny_workdir)
  rng = np.random.default_rng(0)
  x = rng.uniform(-1, 1, (5, 32, 32, 1)).astype(np.float32)
  z = rng.uniform(-1, 1, (5, tr.noise_dim)).astype(np.float32)
  want = tr.translate(x, "yx", noise=z)
  np.save(tmp_path / "x.npy", x), np.save(tmp_path / "z.npy", z)
  p = _run("experiments.export", f"--workdir={tiny_workdir}", "--direction=yx",
           "--format=stablehlo", f"--output={tmp_path}/hlo", timeout=300)
  assert p.returncode == 0, p.stderr[-2000:]
  assert json.load(open(tmp_path / "hlo" / "export.json"))["noise"] == ["batch", tr.noise_dim]
  export.export_savedmodel(tr, "yx", str(tmp_path / "sm"))
  for fmt, path in (("stablehlo", tmp_path / "hlo" / "translate.stablehlo"),
                    ("savedmodel", tmp_path / "sm")):
    out = subprocess.run([sys.executable, "-c", _LOAD_EXPORTS, fmt, str(path),
                          str(tmp_path / "x.npy"), str(tmp_path / "z.npy"),
                          str(tmp_path / f"{fmt}.npy")], capture_output=True, text=True,
                         timeout=300, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert out.returncode == 0, out.stderr[-2000:]
    np.testing.assert_allclose(np.load(tmp_path / f"{fmt}.npy"), want, atol=2e-5, rtol=1e-4)
  bad = _run("experiments.export", f"--workdir={tiny_workdir}", f"--output={tmp_path}/no/x",
             timeout=120)
  assert bad.returncode == 2 and "--output: the folder" in bad.stderr.strip().splitlines()[-1]


@pytest.mark.parametrize("extra,expected", [
    ((), {"jd_bw": "d 5, clip schedule bw_start 0 / bw_full 200",
          "munit_bw": "d 1, clip schedule bw_start 0 / bw_full 1000",
          "munit": "d 1, clip schedule unused, pairing none",
          "pix2pix": "3000 steps, batch 64, d 1, clip schedule unused, pairing same_draw"}),
    (("--d_steps=3", "--bw_start=50", "--bw_full=150"),
     {"jd_bw": "d 3, clip schedule bw_start 50 / bw_full 150",
      "cyclegan_bw": "d 1, clip schedule bw_start 150 / bw_full 450"})])
def test_benchmark_keeps_the_clip_schedule_in_critic_iterations(tmp_path, extra, expected):
  """The recipe's bw_full counts generator steps at d = 5; a variant under the MUNIT rule
  (d = 1) gets the same number of critic iterations, not a 5x faster clip."""
  p = _run("experiments.mass_shift_benchmark",
           "--flagfile=experiments/configs/mass_shift_cpu_recipe.flags", "--dry_run",
           f"--workdir={tmp_path}", f"--variants={','.join(expected)}", *extra, timeout=300)
  assert p.returncode == 0, p.stderr[-2000:]
  for variant, text in expected.items():
    line = next(l for l in p.stderr.splitlines() if f"dry run: {variant} = " in l)
    assert text in line, line


def test_benchmark_names_the_schedules_unit_when_d_steps_is_not_given(tmp_path):
  """--bw_full without --d_steps counts generator steps at each model's default d (JD 5,
  MUNIT 1): the same flag, two units. The dry run says so, per variant, in one line."""
  p = _run("experiments.mass_shift_benchmark", "--dry_run", f"--workdir={tmp_path}",
           "--variants=jd_bw,munit_bw,munit", "--bw_full=300", timeout=300)
  assert p.returncode == 0, p.stderr[-2000:]
  warned = [l for l in p.stderr.splitlines() if "without --d_steps" in l]
  assert len(warned) == 2, warned   # munit has no batch weight: nothing to say
  assert "jd_bw" in warned[0] and "1500 critic iterations" in warned[0], warned[0]
  assert "munit_bw" in warned[1] and "300 critic iterations" in warned[1], warned[1]
  q = _run("experiments.mass_shift_benchmark", "--dry_run", f"--workdir={tmp_path}",
           "--variants=jd_bw,munit_bw", "--bw_full=300", "--d_steps=5", timeout=300)
  assert q.returncode == 0 and "without --d_steps" not in q.stderr, q.stderr[-2000:]


def test_the_imbalance_studys_flagfile_dry_runs(tmp_path):
  """imbalance_cpu.flags: the CPU study's recipe with Y cut to 1 % of its training split,
  its seven variants (BalaGAN with k = 100) checked before anything trains."""
  p = _run("experiments.mass_shift_benchmark", "--flagfile=experiments/configs/imbalance_cpu.flags",
           "--dry_run", f"--workdir={tmp_path}", timeout=300)
  assert p.returncode == 0, p.stderr[-2000:]
  runs = [l.split("dry run: ")[1] for l in p.stderr.splitlines() if "dry run: " in l]
  assert [r.split(" = ")[0] for r in runs[:-1]] == [
      "jd_bw", "munit", "munit_bw", "cyclegan", "cyclegan_bw", "balagan", "irwgan"], runs
  assert "'y': 'idx:/usr/share/datasets/fashion-mnist train[:1%]" in runs[-1], runs[-1]
  assert "'x': 'idx:/usr/share/datasets/fashion-mnist train " in runs[-1], runs[-1]


def test_mass_shift_benchmark_end_to_end(tmp_path, clf_dir):
  """One variant, one seed through the study runner: trained, evaluated, tabulated (the
  table's empty cells for a variant without a metric: test_summarise_mean_std_and_nan;
  a one-directional method's evaluation: the DTN run in test_semantic.py)."""
  p = _run("experiments.mass_shift_benchmark", f"--workdir={tmp_path}",
           "--variants=jd_bw", "--seeds=0", "--steps=2", "--batch_size=8",
           "--d_steps=1", "--g_features=4", "--d_features=2", "--w_features=2",
           "--checkpoint_every=2", "--eval_samples=200", "--eval_batch_size=200",
           "--eval_noise_sources=20", "--eval_noise_draws=2", f"--classifier_dir={clf_dir}",
           # The module's classifiers (CLF), cached by the tests above.
           f"--classifier_steps={CLF.steps}", f"--classifier_train_draws={CLF.train_draws}",
           f"--classifier_test_draws={CLF.test_draws}", "--min_classifier_accuracy=0.5")
  assert p.returncode == 0, p.stderr[-3000:]
  md = open(tmp_path / "results.md").read()
  assert "| class_consistency_xy |" in md and "| class_consistency_yx |" in md and "jd_bw" in md
  csv_rows = open(tmp_path / "results.csv").read().splitlines()
  assert csv_rows[0] == "metric,variant,mean,std,n,values" and len(csv_rows) > 10
  for v in ("jd_bw",):
    assert os.path.isfile(tmp_path / v / "seed_0" / "metrics.json")
