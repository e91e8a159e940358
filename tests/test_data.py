"""Input pipeline: class skew, transforms, layouts, determinism, bad input."""

import gzip
import os
import subprocess
import sys

import chex
import jax
import numpy as np
import pytest
from helpers import one_line as _one_line

from jdbw import data, parallel
from jdbw.data import sources
from jdbw.errors import ConfigError, DataUnavailableError


N_DRAWS = 12288


def _draw(domain, n, seed=0, resolution=32):
  it = data.make_batches({"d": domain}, n, seed=seed, resolution=resolution,
                         device_count=1, process_index=0, process_count=1)
  return next(it)["d"]


def _assert_frequencies(labels, probs):
  """Every class within a 4-sigma binomial bound of its specified probability."""
  n = len(labels)
  freq = np.bincount(labels, minlength=len(probs)) / n
  sigma = np.sqrt(probs * (1 - probs) / n)
  np.testing.assert_array_less(np.abs(freq - probs), 4 * sigma + 1e-12)


@pytest.fixture(scope="module")
def sr_fashion(fashion_dir, tfds_dir):
  return data.load_domain(data.DomainSpec(source=f"idx:{fashion_dir}", classes="0:0.5",
                                          transform="sr", name="y"), data_dir=tfds_dir)


@pytest.fixture(scope="module")
def plain_fashion(fashion_dir, tfds_dir):
  return data.load_domain(data.DomainSpec(source=f"idx:{fashion_dir}", name="x"),
                          data_dir=tfds_dir)


def test_idx_source_is_real_fashion_mnist(plain_fashion, fashion_dir, tfds_dir):
  assert plain_fashion.data.images.shape == (60000, 28, 28, 1)
  np.testing.assert_array_equal(plain_fashion.data.class_counts, np.full(10, 6000))
  test = sources.load_source(f"idx:{fashion_dir}", "test", data_dir=tfds_dir)
  assert test.images.shape == (10000, 28, 28, 1)
  # Prepared once by TFDS: the cache directory exists under data_dir.
  assert os.path.isdir(os.path.join(tfds_dir, "idx_images"))


def test_sr_fashion_frequencies(sr_fashion):
  expected = np.array([0.5] + [0.5 / 9] * 9)
  np.testing.assert_allclose(sr_fashion.probs, expected)
  _assert_frequencies(_draw(sr_fashion, N_DRAWS)["label"], expected)


def test_digits_spec_keeps_natural_frequencies_of_unlisted_classes():
  spec = "3:0.3,7:0.05"
  domain = data.load_domain(data.DomainSpec(source="digits", classes=spec))
  counts = domain.data.class_counts.astype(float)
  unlisted = np.array([c not in (3, 7) for c in range(10)])
  expected = np.zeros(10)
  expected[3], expected[7] = 0.3, 0.05
  expected[unlisted] = 0.65 * counts[unlisted] / counts[unlisted].sum()
  np.testing.assert_allclose(domain.probs, expected, rtol=1e-12)
  _assert_frequencies(_draw(domain, N_DRAWS, seed=3)["label"], expected)


def test_skew_is_exact_for_a_skewed_source():
  """Listed mass stays exact even when the source's own classes are unbalanced."""
  counts = np.array([10, 200, 30, 40, 5, 60, 70, 80, 90, 100])
  probs = data.class_probabilities("1:0.1,4:0.4", counts)
  assert probs[1] == pytest.approx(0.1) and probs[4] == pytest.approx(0.4)
  rest = [0, 2, 3, 5, 6, 7, 8, 9]
  np.testing.assert_allclose(probs[rest], 0.5 * counts[rest] / counts[rest].sum())


def _ink_stats(images, threshold=-0.5):
  """Mean ink area (pixels above threshold) and the spread of ink centroids.

  Ink area rather than the bounding box: rotating a large garment inflates its
  axis-aligned box even when the item itself shrank.
  """
  areas, centroids = [], []
  for im in images[..., 0]:
    ys, xs = np.nonzero(im > threshold)
    if len(ys) == 0:
      continue
    areas.append(len(ys))
    centroids.append((ys.mean(), xs.mean()))
  return np.mean(areas), np.std(np.array(centroids), axis=0).mean()


def test_sr_transform_shrinks_and_displaces(plain_fashion, fashion_dir, tfds_dir):
  sr = data.load_domain(data.DomainSpec(source=f"idx:{fashion_dir}", transform="sr"),
                        data_dir=tfds_dir)
  plain_area, plain_spread = _ink_stats(_draw(plain_fashion, 2048, seed=1)["image"])
  sr_area, sr_spread = _ink_stats(_draw(sr, 2048, seed=1)["image"])
  # Geometry: 28 -> 32 (plain) vs 28 -> crop 33 of 42 -> 32 (sr): ~0.72x the area.
  assert sr_area < 0.85 * plain_area, (sr_area, plain_area)
  assert sr_spread > 1.5 * plain_spread, (sr_spread, plain_spread)


@pytest.mark.parametrize("channels", [1, 3])
def test_dtype_range_shape(channels):
  domain = data.load_domain(data.DomainSpec(source="digits", transform="sr",
                                            channels=channels))
  batch = _draw(domain, 64)
  chex.assert_shape(batch["image"], (64, 32, 32, channels))
  chex.assert_shape(batch["label"], (64,))
  assert batch["image"].dtype == np.float32 and batch["label"].dtype == np.int32
  assert batch["image"].min() >= -1.0 and batch["image"].max() <= 1.0
  assert batch["image"].min() == -1.0 and batch["image"].max() > 0.5  # Uses the range.


def test_same_seed_same_stream_and_different_seed_differs():
  domains = {"x": data.load_domain(data.DomainSpec(source="digits", transform="sr")),
             "y": data.load_domain(data.DomainSpec(source="digits", classes="0:0.5",
                                                   name="y"))}

  def take(seed):
    it = data.make_batches(domains, 32, seed=seed)
    return [next(it) for _ in range(3)]

  a, b, c = take(7), take(7), take(8)
  chex.assert_trees_all_equal(a, b)
  assert not np.array_equal(a[0]["x"]["image"], c[0]["x"]["image"])
  # The two domains are independent streams, not one stream twice.
  assert not np.array_equal(a[0]["x"]["label"], a[0]["y"]["label"])


def test_skip_continues_the_stream_exactly():
  """A resume rebuilds the stream with `skip` (jdbw.train): the skipped stream is the
  unskipped one minus its first elements, stacked batches, SR transform and points too."""
  domains = {"x": data.load_domain(data.DomainSpec(source="digits", transform="sr")),
             "y": data.load_domain(data.DomainSpec(source="digits", classes="0:0.5",
                                                   name="y"))}
  full = data.make_batches(domains, 4, seed=3, stack=(3,))
  want = [next(full) for _ in range(7)][5:]
  got = data.make_batches(domains, 4, seed=3, stack=(3,), skip=5)
  chex.assert_trees_all_equal(want, [next(got) for _ in range(2)])
  points = {"x": data.load_domain(data.DomainSpec(source="mixture2d"))}
  full = data.make_batches(points, 8, seed=1)
  want = [next(full) for _ in range(4)][3]
  chex.assert_trees_all_equal(want, next(data.make_batches(points, 8, seed=1, skip=3)))


def test_same_draw_pairs_are_the_x_stream_and_its_images_through_ys_transform():
  """--pairing=same_draw: X's batches are the unpaired X stream's, draw for draw; each Y
  is the same image (same label) through Y's transform, so Y follows X's classes (not
  --classes_y); with the same transform the pair is one image twice. Skip continues it."""
  x = data.load_domain(data.DomainSpec(source="digits", classes="3:0.6"))
  y_sr = data.load_domain(data.DomainSpec(source="digits", classes="0:0.5", transform="sr",
                                          name="y"))
  y_plain = data.load_domain(data.DomainSpec(source="digits", name="y"))
  take = lambda it, n: [next(it) for _ in range(n)]
  unpaired = take(data.make_batches({"x": x, "y": y_sr}, 64, seed=5, stack=(2,)), 3)
  paired = take(data.make_batches({"x": x, "y": y_sr}, 64, seed=5, stack=(2,),
                                  pairing="same_draw"), 3)
  for u, p in zip(unpaired, paired):
    chex.assert_trees_all_equal(u["x"], p["x"])
    np.testing.assert_array_equal(p["y"]["label"], p["x"]["label"])
    assert not np.array_equal(p["y"]["image"], p["x"]["image"])   # SR moved them
  labels = np.concatenate([p["y"]["label"].ravel() for p in paired])
  assert 0.45 < np.mean(labels == 3) < 0.75 and np.mean(labels == 0) < 0.2
  same = next(data.make_batches({"x": x, "y": y_plain}, 16, seed=5, pairing="same_draw"))
  np.testing.assert_array_equal(same["x"]["image"], same["y"]["image"])
  later = next(data.make_batches({"x": x, "y": y_sr}, 64, seed=5, stack=(2,), skip=2,
                                 pairing="same_draw"))
  chex.assert_trees_all_equal(later, paired[2])


def test_pairs_need_one_source_and_a_known_pairing():
  x = data.load_domain(data.DomainSpec(source="digits"))
  fashion = data.load_domain(data.DomainSpec(source="idx:/usr/share/datasets/fashion-mnist",
                                             name="y"))
  with pytest.raises(ConfigError) as e:
    data.check_pairing({"x": x, "y": fashion}, "same_draw")
  _one_line(e, "--source_y", "--pairing=same_draw", "give the same source")
  with pytest.raises(ConfigError) as e:
    data.check_pairing({"x": x, "y": x}, "by_name")
  _one_line(e, "--pairing", "by_name", "same_draw")
  points = data.load_domain(data.DomainSpec(source="mixture2d", name="y"))
  with pytest.raises(ConfigError) as e:
    data.check_pairing({"x": x, "y": points}, "same_draw")
  _one_line(e, "--pairing", "point source")


def test_a_data_set_prepared_by_another_process_meanwhile_is_used():
  """Two processes preparing one IDX/TFDS data set at once: TFDS's rename into place
  fails for the second with FileExistsError; the copy in place is used (a builder made
  anew reads it), and a FileExistsError with nothing in place is not hidden."""
  class Builder:
    def __init__(self, ready, fails):
      self.ready, self.fails = ready, fails

    def download_and_prepare(self):
      if self.fails:
        raise FileExistsError("Cannot rename incomplete.X: destination already exists")

    def is_prepared(self):
      return self.ready

  fresh = Builder(True, False)
  assert sources.prepared(Builder(False, True), lambda: fresh) is fresh
  first = Builder(False, False)
  assert sources.prepared(first, lambda: fresh) is first
  with pytest.raises(FileExistsError):
    sources.prepared(Builder(False, True), lambda: Builder(False, False))


def test_layouts_for_pmap_and_mesh():
  assert jax.device_count() == 2, "tests expect two fake CPU devices (conftest)"
  domain = data.load_domain(data.DomainSpec(source="digits"))
  it = data.make_batches({"x": domain}, 8, seed=0, stack=(3,))
  batch = next(it)
  chex.assert_shape(batch["x"]["image"], (3, 8, 32, 32, 1))  # [d, B, ...]
  pm = parallel.to_pmap(batch, batch_axis=1)
  chex.assert_shape(pm["x"]["image"], (2, 3, 4, 32, 32, 1))
  chex.assert_shape(pm["x"]["label"], (2, 3, 4))
  np.testing.assert_array_equal(pm["x"]["label"][1], batch["x"]["label"][:, 4:])
  mesh = parallel.make_mesh()
  g = parallel.to_global(batch, mesh, batch_axis=1)
  chex.assert_shape(g["x"]["image"], (3, 8, 32, 32, 1))
  shard_shapes = {s.data.shape for s in g["x"]["image"].addressable_shards}
  assert shard_shapes == {(3, 4, 32, 32, 1)}
  np.testing.assert_array_equal(np.asarray(g["x"]["label"]), batch["x"]["label"])


def test_multi_host_slices_are_disjoint_and_cover_the_split():
  a = sources.load_source("digits", "train", process_index=0, process_count=2)
  b = sources.load_source("digits", "train", process_index=1, process_count=2)
  whole = sources.load_source("digits", "train")
  assert len(a.labels) + len(b.labels) == len(whole.labels)
  assert data.host_batch_size(128, device_count=8, process_count=2) == 64


def test_digits_slices_split_train_into_disjoint_training_and_validation_parts():
  whole = sources.load_source("digits", "train")
  fit = sources.load_source("digits", "train[:90%]")
  val = sources.load_source("digits", "train[90%:]")
  assert len(fit.labels) + len(val.labels) == len(whole.labels)
  np.testing.assert_array_equal(np.concatenate([fit.images, val.images]), whole.images)
  assert len(sources.load_source("digits", "test[:10]").labels) == 10
  with pytest.raises(ConfigError) as e:
    sources.load_source("digits", "validation", what="--eval_split")
  _one_line(e, "--eval_split", "'train[:90%]'")


# --- Bad input: one clear line naming the flag or file. ---

def test_unknown_source():
  with pytest.raises(ConfigError) as e:
    data.load_domain(data.DomainSpec(source="mnist", name="y"))
  _one_line(e, "--source_y", "'digits', 'tfds:<name>', 'idx:<dir>', 'folder:<dir>' or",
            "'mixture2d[:key=value,...]'")


def test_missing_idx_dir(tmp_path):
  with pytest.raises(ConfigError) as e:
    data.load_domain(data.DomainSpec(source=f"idx:{tmp_path}/nope"))
  _one_line(e, "--source_x", "does not exist")


def test_idx_dir_without_files(tmp_path):
  with pytest.raises(ConfigError) as e:
    data.load_domain(data.DomainSpec(source=f"idx:{tmp_path}"))
  _one_line(e, "--source_x", "train-images-idx3-ubyte.gz")


def _truncated(path):
  with open(path, "rb") as f:
    whole = f.read()
  return whole[:len(whole) // 2]   # a copy cut off mid-stream


@pytest.mark.parametrize("contents,needles", [
    (lambda fashion: _gzipped(b"not an idx file"), ("--source_x", "magic")),
    (lambda fashion: _truncated(os.path.join(fashion, "t10k-labels-idx1-ubyte.gz")),
     ("--source_x", "truncated or damaged")),
    (lambda fashion: _gzipped(bytes([0, 0, 8, 1]) + (5).to_bytes(4, "big") + bytes(5)),
     ("expected (10000,)",)),
], ids=["malformed", "truncated_gzip", "label_count_mismatch"])
def test_a_damaged_idx_file_is_one_line(tmp_path, fashion_dir, contents, needles):
  """Fashion-MNIST's files with the test labels replaced by `contents`."""
  for name in os.listdir(fashion_dir):
    os.symlink(os.path.join(fashion_dir, name), tmp_path / name)
  os.remove(tmp_path / "t10k-labels-idx1-ubyte.gz")
  with open(tmp_path / "t10k-labels-idx1-ubyte.gz", "wb") as f:
    f.write(contents(fashion_dir))
  with pytest.raises(ConfigError) as e:
    data.load_domain(data.DomainSpec(source=f"idx:{tmp_path}"))
  _one_line(e, "t10k-labels-idx1-ubyte.gz", *needles)


def _gzipped(payload: bytes) -> bytes:
  return gzip.compress(payload)


@pytest.mark.parametrize("spec,needle", [
    ("0:-0.1", "expected a number >= 0"),
    ("0:0.7,1:0.6", "sum to 1.3"),
    ("10:0.5", "class 10 does not exist"),
    ("0=0.5", "cannot parse"),
    ("0:0.5,0:0.1", "listed twice"),
])
def test_bad_class_specs(spec, needle):
  with pytest.raises(ConfigError) as e:
    data.load_domain(data.DomainSpec(source="digits", classes=spec, name="y"))
  _one_line(e, "--classes_y", needle)


def test_global_batch_not_divisible_by_devices():
  domain = data.load_domain(data.DomainSpec(source="digits"))
  with pytest.raises(ConfigError) as e:
    data.make_batches({"x": domain}, 7, seed=0)  # Two devices.
  _one_line(e, "--batch_size", "multiple of the device count (2)")


def test_tfds_offline_or_download(tmp_path):
  """Offline: a clear error naming the alternatives. Online: real MNIST."""
  try:
    src = sources.load_source("tfds:mnist", data_dir=str(tmp_path), what="--source_x")
  except DataUnavailableError as e:
    msg = str(e)
    assert "\n" not in msg and "--source_x" in msg
    assert "idx:/usr/share/datasets/fashion-mnist" in msg and "digits" in msg
  else:
    assert src.images.shape == (60000, 28, 28, 1)


def test_unknown_tfds_name(tmp_path):
  with pytest.raises(ConfigError) as e:
    sources.load_source("tfds:no_such_dataset_xyz", data_dir=str(tmp_path), what="--source_x")
  _one_line(e, "--source_x", "no_such_dataset_xyz")


def test_entrypoint_prints_one_line_and_exits_2(tmp_path):
  proc = subprocess.run(
      [sys.executable, "-m", "experiments.preview_data", "--classes_y=0:1.5",
       f"--output={tmp_path}/p.png"], capture_output=True, text=True, timeout=300,
      cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  assert proc.returncode == 2
  last = proc.stderr.strip().splitlines()[-1]
  assert last.startswith("error: --classes_y:") and "sum to 1.5" in last


def test_unknown_flag_hint_names_the_flag_meant():
  from absl import flags
  from experiments import common
  known = ["steps", "d_steps", "batch_size", "lr", "w_lr", "checkpoint_every"]
  assert common.suggest("num_steps", known)[0] == "steps"
  assert common.suggest("d_step", known) == ["d_steps"]
  assert common.suggest("batchsize", known) == ["batch_size"]
  assert common.suggest("zzz", known) == []
  fv = flags.FlagValues()
  flags.DEFINE_integer("steps", 1, "", flag_values=fv)
  with pytest.raises(flags.UnrecognizedFlagError) as e:
    fv(["prog", "--num_steps=3"])
  assert e.value.flagname == "num_steps"   # what common.parse_flags reads


@pytest.mark.parametrize("extra", [[], ["--pairing=same_draw"]])
def test_preview_writes_png(tmp_path, extra):
  proc = subprocess.run(
      [sys.executable, "-m", "experiments.preview_data", f"--output={tmp_path}/p.png",
       "--num_draws=512", *extra], capture_output=True, text=True, timeout=300,
      cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  assert proc.returncode == 0, proc.stderr[-2000:]
  with open(tmp_path / "p.png", "rb") as f:
    assert f.read(8) == b"\x89PNG\r\n\x1a\n"
