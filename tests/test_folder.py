"""Image-folder domains (`folder:<dir>`), built from real Fashion-MNIST images: layout,
labels from subfolders, splits, decoding of mixed files, the cache, bad input, class
skew by name, unlabelled domains, and a tiny 128x128 run that trains and evaluates."""

import dataclasses
import os

import jax
import numpy as np
import pytest
import tensorflow as tf

import helpers
from jdbw import data, methods, train
from jdbw.data import folder
from jdbw.errors import ConfigError

FASHION = "idx:/usr/share/datasets/fashion-mnist"
SHOES, BAGS = (7, 9), (8,)   # sneakers + ankle boots, bags (the paper's Shoes & Bags)


def _fashion(n_per_class=30):
  src = data.load_source(FASHION, "test")
  pick = lambda classes: np.concatenate([np.flatnonzero(src.labels == c)[:n_per_class]
                                         for c in classes])
  return src.images[pick(SHOES)], src.images[pick(BAGS)]


def _write(path, image, fmt="png"):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  enc = tf.io.encode_png if fmt == "png" else tf.io.encode_jpeg
  tf.io.write_file(path, enc(tf.constant(image)))


def _shoes_and_bags(root, rgb_every=5):
  """<root>/{bags,shoes}/*.png|jpg from real Fashion-MNIST images (some RGB / RGBA)."""
  shoes, bags = _fashion()
  for name, imgs in (("shoes", shoes), ("bags", bags)):
    for i, im in enumerate(imgs):
      if i % rgb_every == 1:
        _write(f"{root}/{name}/{i:03d}.jpg", np.repeat(im, 3, -1), "jpg")
      elif i % rgb_every == 2:
        _write(f"{root}/{name}/{i:03d}.png", np.concatenate(
            [np.repeat(im, 3, -1), np.full_like(im, 255)], -1))      # RGBA
      else:
        _write(f"{root}/{name}/{i:03d}.png", im)
  return len(shoes), len(bags)


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
  monkeypatch.setenv("JDBW_CACHE", str(tmp_path / "cache"))


def test_labels_from_subfolders_and_the_hash_split(tmp_path):
  n_shoes, n_bags = _shoes_and_bags(tmp_path / "sb")
  spec = f"folder:{tmp_path / 'sb'}:size=32,test_fraction=0.25"
  tr = data.load_source(spec, "train")
  te = data.load_source(spec, "test")
  assert tr.class_names == te.class_names == ("bags", "shoes") and tr.num_classes == 2
  assert len(tr.labels) + len(te.labels) == n_shoes + n_bags
  assert 0.1 < len(te.labels) / (n_shoes + n_bags) < 0.4
  assert tr.images.shape[1:] == (32, 32, 3) and tr.images.dtype == np.uint8   # colour -> RGB
  # The split is a function of the file names: the same on every load, and disjoint.
  again = data.load_source(spec, "test")
  np.testing.assert_array_equal(again.images, te.images)
  root, paths_tr, _, _ = folder.scan(str(tmp_path / "sb"), "train", folder.parse(spec, "f")[1], "f")
  _, paths_te, _, _ = folder.scan(str(tmp_path / "sb"), "test", folder.parse(spec, "f")[1], "f")
  assert not set(paths_tr) & set(paths_te)
  # A grey image keeps its pixels through PNG, decode and a same-size "resize".
  shoes, _ = _fashion()
  grey_spec = f"folder:{tmp_path / 'sb'}:size=28,test_fraction=0"
  grey = data.load_source(grey_spec, "train")
  _, all_paths, all_labels, _ = folder.scan(str(tmp_path / "sb"), "train",
                                            folder.parse(grey_spec, "f")[1], "f")
  first_shoe = grey.images[all_paths.index(os.path.join("shoes", "000.png"))]
  np.testing.assert_array_equal(first_shoe[..., 0], shoes[0][..., 0])
  np.testing.assert_array_equal(grey.labels, all_labels)
  # Within a class the files are in a hash order, not by name (slices sample a class).
  shoe_paths = [q for q in all_paths if q.startswith("shoes")]
  assert sorted(shoe_paths) == sorted(os.path.join("shoes", f) for f in
                                      os.listdir(tmp_path / "sb" / "shoes"))
  assert shoe_paths != sorted(shoe_paths)
  # Slices of a split are cut from every class alike: a validation slice at the end of
  # the split holds both classes at their shares (not only the last class).
  half = data.load_source(spec, "train[:50%]")
  counts = np.bincount(tr.labels, minlength=2)
  assert abs(len(half.labels) - len(tr.labels) / 2) <= 2
  val = data.load_source(spec, "train[80%:]")
  np.testing.assert_array_equal(np.bincount(val.labels, minlength=2),
                                counts - np.round(counts * 0.8).astype(int))
  rest = data.load_source(spec, "train[:80%]")
  seen = {im.tobytes() for im in rest.images}
  assert not any(im.tobytes() in seen for im in val.images)   # disjoint slices
  # Class skew by name.
  dom = data.load_domain(data.DomainSpec(source=spec, classes="shoes:0.9", name="x"))
  np.testing.assert_allclose(dom.probs, [0.1, 0.9])
  with pytest.raises(ConfigError) as e:
    data.load_domain(data.DomainSpec(source=spec, classes="boots:0.9", name="x"))
  helpers.one_line(e, "--classes_x", "bags, shoes")


def test_explicit_train_test_folders_and_unlabelled(tmp_path):
  shoes, bags = _fashion(8)
  for i, im in enumerate(shoes):
    _write(f"{tmp_path}/tt/{'train' if i < 12 else 'test'}/shoes/{i}.png", im)
  for i, im in enumerate(bags):
    _write(f"{tmp_path}/tt/{'train' if i < 6 else 'test'}/bags/{i}.png", im)
  tr = data.load_source(f"folder:{tmp_path / 'tt'}:size=28", "train")
  te = data.load_source(f"folder:{tmp_path / 'tt'}:size=28", "test")
  assert (len(tr.labels), len(te.labels)) == (18, 6) and tr.images.shape[-1] == 1
  for i, im in enumerate(shoes):
    _write(f"{tmp_path}/flat/{i}.png", im)
  u = data.load_source(f"folder:{tmp_path / 'flat'}:size=28,test_fraction=0", "train")
  assert not u.labelled and u.num_classes == 1 and len(u.labels) == len(shoes)


def test_bad_folders_get_one_line_each(tmp_path):
  what = "--source_x"
  load = lambda d, **kw: data.load_source(f"folder:{d}" + (":" + ",".join(
      f"{k}={v}" for k, v in kw.items()) if kw else ""), "train", what=what)
  with pytest.raises(ConfigError) as e:
    load(tmp_path / "missing")
  helpers.one_line(e, what, "does not exist")
  (tmp_path / "empty").mkdir()
  with pytest.raises(ConfigError) as e:
    load(tmp_path / "empty")
  helpers.one_line(e, what, "no .png")
  (tmp_path / "cls" / "shoes").mkdir(parents=True)
  (tmp_path / "cls" / "bags").mkdir()
  shoes, _ = _fashion(3)
  for i, im in enumerate(shoes):
    _write(f"{tmp_path}/cls/shoes/{i}.png", im)
  with pytest.raises(ConfigError) as e:
    load(tmp_path / "cls")
  helpers.one_line(e, what, "bags", "has no")
  _write(f"{tmp_path}/mixed/a/0.png", shoes[0])
  _write(f"{tmp_path}/mixed/1.png", shoes[1])
  with pytest.raises(ConfigError) as e:
    load(tmp_path / "mixed")
  helpers.one_line(e, what, "both images")
  # Undecodable files: skipped (warning) up to max_bad, refused above it.
  for i, im in enumerate(shoes):
    _write(f"{tmp_path}/bad/{i}.png", im)
  (tmp_path / "bad" / "broken.png").write_bytes(b"not an image")
  got = load(tmp_path / "bad", test_fraction=0, max_bad=0.5)
  assert len(got.labels) == len(shoes)
  with pytest.raises(ConfigError) as e:
    load(tmp_path / "bad", test_fraction=0, max_bad=0.1)
  helpers.one_line(e, what, "do not decode", "broken.png")
  with pytest.raises(ConfigError) as e:
    load(tmp_path / "bad", fit="stretch")
  helpers.one_line(e, what, "fit")
  with pytest.raises(ConfigError) as e:
    load(tmp_path / "bad", half="top")
  helpers.one_line(e, what, "half in ('left', 'right')")
  def refused(d, *needles, **kw):
    with pytest.raises(ConfigError) as e:
      load(d, **kw)
    helpers.one_line(e, what, *needles)

  # A train/ without test/ (it would be read as a class named 'train').
  _write(f"{tmp_path}/half/train/shoes/0.png", shoes[0])
  _write(f"{tmp_path}/half/shoes/0.png", shoes[0])
  refused(tmp_path / "half", "train/", "no test/")
  # Explicit splits with different classes (labels would shift silently).
  for i, part in enumerate(("train/shoes", "train/bags", "test/shoes")):
    _write(f"{tmp_path}/tt/{part}/0.png", shoes[i])
  refused(tmp_path / "tt", "different class", "train only: ['bags']")
  # A class too small for the hash split to leave it an image in the split asked for.
  _write(f"{tmp_path}/tiny/shoes/0.png", shoes[0])
  for i, im in enumerate(shoes):
    _write(f"{tmp_path}/tiny/bags/{i}.png", im)
  refused(tmp_path / "tiny", "hash split", "test_fraction", test_fraction=0.999)


def test_mixed_sizes_crop_and_the_cache(tmp_path, monkeypatch):
  shoes, _ = _fashion(4)
  _write(f"{tmp_path}/sz/a.png", shoes[0])
  wide = np.zeros((28, 56, 1), np.uint8)
  wide[:, 14:42] = shoes[1]
  _write(f"{tmp_path}/sz/b.png", wide)
  spec = f"folder:{tmp_path / 'sz'}:size=28,fit=crop,test_fraction=0"
  got = data.load_source(spec, "train")
  assert got.images.shape == (2, 28, 28, 1)
  # The centre crop of the wide image is the shoe it holds.
  paths = folder.scan(str(tmp_path / "sz"), "train", folder.parse(spec, "f")[1], "f")[1]
  np.testing.assert_array_equal(got.images[paths.index("b.png")], shoes[1])
  # Cached: a second load decodes nothing; a changed folder is decoded again.
  monkeypatch.setattr(folder, "decode", lambda *a, **k: (_ for _ in ()).throw(AssertionError))
  np.testing.assert_array_equal(data.load_source(spec, "train").images, got.images)
  _write(f"{tmp_path}/sz/c.png", shoes[2])
  with pytest.raises(AssertionError):
    data.load_source(spec, "train")


@pytest.mark.slow
def test_a_folder_trains_at_128_and_evaluates_on_its_classes(tmp_path):
  """Shoes & Bags with 90 % shoes (X) against an unskewed copy (Y), §4.4's 128x128
  networks: a few iterations train every network, then the evaluation with classifiers
  trained on the folder classes (an unlabelled folder: the test below)."""
  _shoes_and_bags(tmp_path / "x")
  _shoes_and_bags(tmp_path / "y", rgb_every=3)
  assert folder.paired_names(str(tmp_path / "x"), str(tmp_path / "y")) > 0
  specs = {"x": data.DomainSpec(source=f"folder:{tmp_path / 'x'}:size=128", classes="shoes:0.9",
                                channels=3, name="x"),
           "y": data.DomainSpec(source=f"folder:{tmp_path / 'y'}:size=128", channels=3, name="y")}
  m = methods.build("jd", resolution=128, channels_x=3, channels_y=3, noise_dim=4, d_steps=1,
                    g_features=4, d_features=4, w_features=4)
  run = train.RunConfig(workdir=str(tmp_path / "run"), steps=3, batch_size=2,
                        checkpoint_every=3, figure_every=0, log_every=1)
  state = train.train(m, run, specs)
  assert int(state.step) == 3
  init = train.compiled_init(m)(jax.random.PRNGKey(run.seed))   # the run's own program
  for net in ("G", "D", "W"):
    assert not all(np.array_equal(a, b) for a, b in zip(
        jax.tree.leaves(init.params[net]), jax.tree.leaves(state.params[net]))), net
  import json
  with open(tmp_path / "run" / "config.json") as f:
    assert json.load(f)["class_names"] == {"x": ["bags", "shoes"], "y": ["bags", "shoes"]}
  from jdbw.evaluation import classifier, evaluator, report
  cfg = evaluator.EvalConfig(samples=20, batch_size=10, noise_sources=4, noise_draws=2,
                             split="test", classifier_dir=str(tmp_path / "clf"),
                             min_classifier_accuracy=0.5)
  res = report.evaluate_workdir(str(tmp_path / "run"), cfg, classifier_config=(
      classifier.ClassifierConfig(features=(8, 16, 16), hidden=32, steps=40, batch_size=16,
                                    train_draws=120, test_draws=40)))
  assert res["classifier"]["x"]["test_accuracy"] >= 0.5
  assert {"class_consistency_xy", "tv_weighted"} <= set(res["scalars"])


def test_an_unlabelled_folder_trains_and_the_evaluation_says_it_needs_labels(tmp_path):
  """A folder without class subfolders is one unlabelled class: it trains (here at 32x32,
  grey: the tiny JD programs of the other tests), Figure 3 names X's classes and says Y
  has none to split by, and the evaluation refuses it in one line."""
  _shoes_and_bags(tmp_path / "x")
  flat = tmp_path / "flat"
  os.makedirs(flat)
  for i, p in enumerate(sorted((tmp_path / "x" / "bags").iterdir())[:6]):
    (flat / f"{i}{p.suffix}").write_bytes(p.read_bytes())
  unl = {"x": data.DomainSpec(source=f"folder:{tmp_path / 'x'}:size=32", classes="shoes:0.9",
                              name="x"),
         "y": data.DomainSpec(source=f"folder:{flat}:size=32,test_fraction=0", name="y")}
  m = methods.build("jd", g_features=4, d_features=2, w_features=2, d_steps=1)
  train.train(m, train.RunConfig(workdir=str(tmp_path / "unl"), steps=1, batch_size=4,
                                 checkpoint_every=1, figure_every=1, log_every=1), unl)
  import json
  with open(tmp_path / "unl" / "figures" / "figure3_weights.json") as f:
    fig3 = json.load(f)
  assert fig3["unlabelled"] == ["y"] and fig3["class_names"] == {"x": ["bags", "shoes"]}
  assert fig3["targets"] is None
  from jdbw.evaluation import evaluator
  small = evaluator.EvalConfig(split="train", samples=20, batch_size=10, noise_sources=4,
                               noise_draws=2)
  with pytest.raises(ConfigError) as e:   # before any classifier trains
    evaluator.Evaluator(m, unl, small)
  helpers.one_line(e, "--source_y", "unlabelled", "--eval_inception")
  # The weights alone (--weights_only) need labels whatever --eval_inception says.
  with pytest.raises(ConfigError) as e:
    evaluator.Evaluator(m, unl, dataclasses.replace(small, inception=True),
                        with_classifiers=False)
  helpers.one_line(e, "--source_y", "unlabelled")
  assert "--eval_inception" not in str(e.value)
  # FID and KID need no labels: the same run evaluates with them alone.
  from jdbw.evaluation import report
  res = report.evaluate_workdir(str(tmp_path / "unl"), evaluator.EvalConfig(
      split="train", samples=12, batch_size=6, noise_sources=4, noise_draws=2,
      inception=True, feature_model=helpers.tiny_feature_model(tmp_path / "f.keras"),
      kid_subset_size=6))
  assert res["labelled"] is False and "class_consistency_xy" not in res
  assert {"fid_xy", "fid_yx", "kid_xy", "kid_yx"} == set(res["scalars"])
  assert "classes" not in res["inception_xy"] and res["inception_xy"]["n_fake"] == 12
  assert "only FID and KID" in open(tmp_path / "unl" / "report.md").read()


def test_the_halves_of_a_side_by_side_folder_are_pairs(tmp_path):
  """pix2pix's aligned A|B files: `half=left` and `half=right` of one folder are two
  domains whose same draws are pairs (`--pairing=same_draw`): here B is A inverted, so
  each Y is −X; a half of another folder, or a streamed one, is refused in one line."""
  shoes, bags = _fashion(n_per_class=8)
  for name, imgs in (("shoes", shoes), ("bags", bags)):
    for i, im in enumerate(imgs):
      _write(f"{tmp_path}/ab/{name}/{i:03d}.png", np.concatenate([im, 255 - im], axis=1))
  spec = lambda half, name: data.DomainSpec(
      source=f"folder:{tmp_path / 'ab'}:size=28,half={half},test_fraction=0", name=name)
  x, y = data.load_domain(spec("left", "x")), data.load_domain(spec("right", "y"))
  assert x.data.images.shape == y.data.images.shape == (len(shoes) + len(bags), 28, 28, 1)
  np.testing.assert_array_equal(y.data.images, 255 - x.data.images)
  batch = next(data.make_batches({"x": x, "y": y}, 16, seed=0, resolution=28,
                                 pairing="same_draw"))
  np.testing.assert_array_equal(batch["x"]["label"], batch["y"]["label"])
  np.testing.assert_allclose(batch["y"]["image"], -batch["x"]["image"], atol=1e-5)
  unpaired = next(data.make_batches({"x": x, "y": y}, 16, seed=0, resolution=28))
  np.testing.assert_array_equal(unpaired["x"]["image"], batch["x"]["image"])
  other = data.load_domain(data.DomainSpec(source=FASHION, split="test", name="y"))
  with pytest.raises(ConfigError) as e:
    data.check_pairing({"x": x, "y": other}, "same_draw")
  helpers.one_line(e, "--source_y", "two folders holding the same file names")


def test_two_folders_pair_their_files_by_name(tmp_path, caplog):
  """Two folders holding the same file names (edges/ and photos/, say) are pairs by name
  (the path below the split root, class subfolder included), whatever order each folder
  was written in: here each photo is its edge image inverted, written in reverse order;
  X's one file without a photo is never drawn (one warning), Y's extra file is ignored,
  and folders sharing no name in a class X draws from are refused in one line."""
  shoes, bags = _fashion(n_per_class=6)
  for name, imgs in (("shoes", shoes), ("bags", bags)):
    for i, im in enumerate(imgs):
      _write(f"{tmp_path}/edges/{name}/{i:03d}.png", im)
    for i, im in reversed(list(enumerate(imgs))):
      _write(f"{tmp_path}/photos/{name}/{i:03d}.png", 255 - im)
  _write(f"{tmp_path}/edges/shoes/lonely.png", np.zeros((28, 28, 1), np.uint8))
  _write(f"{tmp_path}/photos/bags/extra.png", np.zeros((28, 28, 1), np.uint8))
  spec = lambda d, name, classes="": data.DomainSpec(
      source=f"folder:{tmp_path / d}:size=28,test_fraction=0", classes=classes, name=name)
  x, y = data.load_domain(spec("edges", "x", "shoes:0.75")), data.load_domain(spec("photos", "y"))
  assert len(x.data.file_names) == len(y.data.file_names) == len(shoes) + len(bags) + 1
  with caplog.at_level("WARNING"):
    data.check_pairing({"x": x, "y": y}, "same_draw")
  assert f"1 of the {len(shoes) + len(bags) + 1} files" in caplog.text
  assert "not drawn" in caplog.text
  caplog.clear()
  with caplog.at_level("WARNING"):   # a stream (one per segment of a run) does not repeat it
    batches = data.make_batches({"x": x, "y": y}, 64, seed=1, resolution=28,
                                pairing="same_draw")
  assert "not drawn" not in caplog.text
  for _ in range(2):
    batch = next(batches)
    np.testing.assert_array_equal(batch["x"]["label"], batch["y"]["label"])
    np.testing.assert_allclose(batch["y"]["image"], -batch["x"]["image"], atol=1e-5)
    assert (batch["x"]["image"].reshape(64, -1).max(1) > -1).all()   # never lonely.png
    assert 0.6 < batch["x"]["label"].mean() < 0.9   # shoes (label 1) at 0.75, as asked
  none = tmp_path / "none"
  _write(f"{none}/shoes/other.png", shoes[0])
  _write(f"{none}/bags/{0:03d}.png", bags[0])
  with pytest.raises(ConfigError) as e:
    data.check_pairing({"x": x, "y": data.load_domain(spec("none", "y"))}, "same_draw")
  helpers.one_line(e, "--source_y", "class(es) shoes", "relative to the split root")


@pytest.mark.parametrize("flagfile", ["edges_shoes_bags", "celeba_portraits",
                                      "edges_shoes_paired", "faces_cartoons"])
def test_the_128_flagfiles_parse_and_ask_for_their_folders(flagfile, tmp_path):
  """The paper's 128x128 tasks (and XGAN's 64x64 faces <-> cartoons) point at
  user-provided folders: their flags parse and
  their model configs validate, and without the data the run stops in one line naming
  the folder (in a subprocess: one entrypoint module per process)."""
  import subprocess
  import sys
  out = subprocess.run(
      [sys.executable, "-m", "experiments.mnist_srmnist",
       f"--flagfile=experiments/configs/{flagfile}.flags", f"--workdir={tmp_path / 'run'}"],
      capture_output=True, text=True, timeout=300,
      env={**os.environ, "XLA_FLAGS": helpers.xla_flags()})
  last = out.stderr.strip().splitlines()[-1]
  assert out.returncode == 2, out.stderr[-2000:]
  assert "--source_x" in last and "does not exist" in last and f"data/{flagfile}" in last


def _draws(domain, n, process_index=0, seed=3):
  ds = data.domain_dataset(domain, seed=seed, resolution=32, process_index=process_index)
  out = list(ds.take(n).as_numpy_iterator())
  return np.stack([e["image"] for e in out]), np.array([e["label"] for e in out])


def test_a_streamed_folder_is_the_in_memory_stream_draw_for_draw(tmp_path, monkeypatch):
  """stream=yes keeps no pixels in memory and reads the cache class by class; with each
  class inside the shuffle buffer its draws equal the in-memory source's, for a slice of
  the split and for each host's part of it."""
  _shoes_and_bags(tmp_path / "sb")
  base = f"folder:{tmp_path / 'sb'}:size=32,test_fraction=0.25"
  for split, (pi, pc) in (("train", (0, 1)), ("train[10%:80%]", (1, 2))):
    doms = [data.load_domain(data.DomainSpec(source=f"{base},stream={s}", split=split,
                                             classes="shoes:0.9", channels=3, name="x"),
                             process_index=pi, process_count=pc) for s in ("no", "yes")]
    memory, streamed = doms
    assert streamed.data.stream is not None and streamed.data.images.shape == (0, 32, 32, 3)
    assert memory.data.stream is None and len(memory.data.images) == len(memory.data.labels)
    np.testing.assert_array_equal(streamed.data.labels, memory.data.labels)
    np.testing.assert_array_equal(streamed.probs, memory.probs)
    (a, la), (b, lb) = (_draws(d, 60, pi) for d in doms)   # more than a pass of each class
    np.testing.assert_array_equal(la, lb)
    np.testing.assert_array_equal(a, b)
  # The stream option does not change the cache: nothing is decoded again.
  monkeypatch.setattr(folder, "decode", lambda *a, **k: (_ for _ in ()).throw(AssertionError))
  data.load_source(f"{base},stream=yes", "train")
  # auto streams above STREAM_BYTES.
  monkeypatch.setattr(folder, "STREAM_BYTES", 1000)
  assert data.load_source(base, "train").stream is not None


def test_a_streamed_class_larger_than_its_buffer_still_shows_every_image_each_pass(tmp_path):
  _shoes_and_bags(tmp_path / "sb")
  src = data.load_source(f"folder:{tmp_path / 'sb'}:size=28,test_fraction=0,stream=yes",
                         "train")
  whole = data.load_source(f"folder:{tmp_path / 'sb'}:size=28,test_fraction=0,stream=no",
                           "train")
  small = dataclasses.replace(src.stream, shuffle_buffer=4)
  n = int((src.labels == 1).sum())
  got = [e["image"].tobytes() for e in
         small.class_dataset(1, n, seed=0).take(2 * n).as_numpy_iterator()]
  want = sorted(im.tobytes() for im in whole.images[whole.labels == 1])
  assert sorted(got[:n]) == want and sorted(got[n:]) == want   # each pass a permutation
  assert got[:n] != got[n:2 * n]                               # reshuffled between passes


def test_a_workdir_refuses_a_folder_whose_classes_changed(tmp_path):
  record = {"method": "JD", "model": {"a": 1}, "domains": {"x": {"source": "folder:d"}},
            "class_names": {"x": ["bags", "shoes"]}}
  train.check_workdir_config(str(tmp_path), record)
  train.check_workdir_config(str(tmp_path), record)   # the same classes: resumes
  with pytest.raises(ConfigError) as e:
    train.check_workdir_config(str(tmp_path), {**record, "class_names": {"x": ["bags"]}})
  helpers.one_line(e, "--workdir", "class_names.x")


def test_evaluation_keys_and_start_up_checks_of_folder_domains(tmp_path):
  """An evaluation classifier of a folder is keyed by the folder's contents (a changed
  folder trains a new one); the benchmark refuses, before anything trains, an unlabelled
  folder, folders with different classes, and a folder with no classifier threshold."""
  from experiments import common
  from jdbw.evaluation import classifier
  _shoes_and_bags(tmp_path / "sb")
  spec = data.DomainSpec(source=f"folder:{tmp_path / 'sb'}:size=32", channels=3, name="x")
  cfg = classifier.ClassifierConfig()
  key = lambda: classifier.cache_key(spec, np.ones(2), 32, cfg)
  before = key()
  assert key() == before
  shoes, _ = _fashion(1)
  _write(f"{tmp_path}/sb/shoes/new.png", shoes[0])
  assert key() != before
  y = dataclasses.replace(spec, name="y")
  common.check_evaluable({"x": spec, "y": y}, 0.5)
  with pytest.raises(ConfigError) as e:
    common.check_evaluable({"x": spec, "y": y}, None)
  helpers.one_line(e, "--min_classifier_accuracy", "set one explicitly")
  for i, im in enumerate(shoes):
    _write(f"{tmp_path}/flat/{i}.png", im)
  flat = dataclasses.replace(y, source=f"folder:{tmp_path / 'flat'}:size=32")
  with pytest.raises(ConfigError) as e:
    common.check_evaluable({"x": spec, "y": flat}, 0.5)
  helpers.one_line(e, "--source_y", "unlabelled")
  common.check_evaluable({"x": spec, "y": flat}, None, inception=True)   # FID/KID alone
  _write(f"{tmp_path}/other/boots/0.png", shoes[0])
  _write(f"{tmp_path}/other/shoes/0.png", shoes[0])
  other = dataclasses.replace(y, source=f"folder:{tmp_path / 'other'}:size=32,test_fraction=0")
  with pytest.raises(ConfigError) as e:
    common.check_evaluable({"x": spec, "y": other}, 0.5)
  helpers.one_line(e, "--source_x/--source_y", "bags, shoes vs boots, shoes")


def test_a_concurrent_decode_of_the_same_folder_uses_the_other_processes_cache(tmp_path,
                                                                              monkeypatch):
  """Two processes decoding one folder into a shared cache: the one that finishes second
  finds the cache in place (os.replace onto a non-empty directory fails) and reads it."""
  import shutil
  _shoes_and_bags(tmp_path / "sb")
  spec = f"folder:{tmp_path / 'sb'}:size=28,test_fraction=0"
  want = data.load_source(spec, "train")   # the first process's cache
  cache = folder.load(*folder.parse(spec, "f"), "train", "f")[0]["cache"]
  shutil.copytree(cache, tmp_path / "other")
  shutil.rmtree(cache)
  real = os.replace

  def replace(src, dst):   # the other process lands its copy first
    if os.path.abspath(dst) == os.path.abspath(cache):
      shutil.copytree(tmp_path / "other", dst)
    return real(src, dst)

  monkeypatch.setattr(os, "replace", replace)
  got = data.load_source(spec, "train")
  np.testing.assert_array_equal(got.images, want.images)
  assert not [p for p in os.listdir(os.path.dirname(cache)) if ".tmp" in p]


def test_augmentations_flip_half_and_crop_every_offset_only_in_training_draws(tmp_path):
  """`flip=yes` mirrors about half of the draws (binomial bounds), `load_size` crops at
  every offset about equally often, pairs share both, and evaluation draws (and a folder
  without the options) are never augmented."""
  ramp = np.tile(np.arange(32, dtype=np.uint8)[None, :, None] * 8, (32, 1, 1))   # left dark
  for i in range(4):
    _write(f"{tmp_path}/ramps/a/{i}.png", ramp)
  base = f"folder:{tmp_path / 'ramps'}:size=32,test_fraction=0"
  spec = lambda opts, name="x": data.DomainSpec(source=f"{base},{opts}" if opts else base,
                                                name=name)

  def draws(opts, augment, n=400):
    dom = data.load_domain(spec(opts))
    ds = data.domain_dataset(dom, seed=0, resolution=32, augment=augment)
    return np.stack([e["image"] for e in ds.take(n).as_numpy_iterator()])

  flipped = draws("flip=yes", True)[:, 0, :, 0]
  mirrored = flipped[:, 0] > flipped[:, -1]          # bright on the left: flipped
  assert 160 < mirrored.sum() < 240                    # Binomial(400, 0.5): ±4 sd
  assert not (draws("flip=yes", False)[:, 0, 0, 0] > draws("flip=yes", False)[:, 0, -1, 0]).any()
  assert not (draws("", True)[:, 0, 0, 0] > draws("", True)[:, 0, -1, 0]).any()
  # load_size 40: the ramp resized to 40 columns and cropped to 32: the first column's
  # value says the offset, 0..8; each of the 9 offsets about 400 / 9 = 44 times.
  cropped = draws("load_size=40", True)[:, :, :, 0]
  first = cropped[:, 0, 0]
  offsets = np.unique(np.round(first, 3), return_counts=True)[1]
  assert len(offsets) == 9 and offsets.min() > 20 and offsets.max() < 75, offsets
  with pytest.raises(ConfigError) as e:
    data.domain_dataset(data.load_domain(spec("load_size=24")), seed=0, resolution=32,
                        augment=True)
  helpers.one_line(e, "--source_x", "load_size=24", "--resolution=32")
  # A pair shares its crop and flip (the same file on both sides).
  x, y = data.load_domain(spec("load_size=40,flip=yes")), data.load_domain(
      spec("load_size=40,flip=yes", "y"))
  ds = data.paired_dataset(x, y, seed=0, resolution=32, augment=True)
  for e in ds.take(20).as_numpy_iterator():
    np.testing.assert_array_equal(e["x"]["image"], e["y"]["image"])
