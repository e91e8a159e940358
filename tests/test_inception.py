"""FID/KID's feature path (`jdbw.evaluation.inception`) on a tiny stand-in network, since
InceptionV3's weights cannot be downloaded here; the formulas are in test_metrics.py."""

import numpy as np
import pytest

import helpers
from jdbw.errors import ConfigError, DataUnavailableError
from jdbw.evaluation import inception


@pytest.fixture(scope="module")
def net(tmp_path_factory):
  path = helpers.tiny_feature_model(tmp_path_factory.mktemp("fm") / "tiny.keras")
  return inception.FeatureNet.from_path(path, batch_size=7)


def test_features_match_a_numpy_reference_of_the_stand_in(net):
  """Grey images are repeated to RGB and fed as they are ([-1, 1], the net's size): the
  features equal a numpy 3x3 valid convolution + ReLU + mean over positions, batched
  or not."""
  kernel, bias = [np.asarray(w, np.float64) for w in net.model.get_weights()]
  x = np.random.default_rng(0).uniform(-1, 1, (10, 32, 32, 1)).astype(np.float32)
  rgb = np.repeat(x.astype(np.float64), 3, -1)
  conv = sum(np.einsum("nhwc,cf->nhwf", rgb[:, i:i + 30, j:j + 30], kernel[i, j])
             for i in range(3) for j in range(3)) + bias
  want = np.maximum(conv, 0).mean((1, 2))
  got = net(x)
  assert got.shape == (10, 4) and net.dim == 4
  np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(net(x[:3]), got[:3], rtol=1e-5, atol=1e-6)


def test_inputs_are_resized_to_the_networks_size(tmp_path):
  small = inception.FeatureNet.from_path(
      helpers.tiny_feature_model(tmp_path / "s.keras", size=16))
  const = np.full((2, 32, 32, 3), 0.25, np.float32)
  ramp = np.broadcast_to(np.linspace(-1, 1, 32, dtype=np.float32)[None, :, None, None],
                         (2, 32, 32, 3))
  assert small.prepare(const).shape == (2, 16, 16, 3)
  np.testing.assert_allclose(small.prepare(const), 0.25, atol=1e-6)
  r = small.prepare(ramp)
  assert np.all(np.diff(r[0, :, :, 0], axis=0) > 0) and abs(r.mean()) < 1e-5
  with pytest.raises(ConfigError) as e:
    small.prepare(np.zeros((1, 32, 32, 2), np.float32))
  helpers.one_line(e, "--eval_feature_model", "3 channels")


def test_bad_feature_models_and_an_offline_inception_are_one_line(tmp_path, monkeypatch):
  with pytest.raises(ConfigError) as e:
    inception.load_model(str(tmp_path / "none.keras"))
  helpers.one_line(e, "--eval_feature_model", "no such file")
  (tmp_path / "bad.keras").write_bytes(b"not a model")
  with pytest.raises(ConfigError) as e:
    inception.load_model(str(tmp_path / "bad.keras"))
  helpers.one_line(e, "--eval_feature_model", "not a Keras model")
  import keras

  def offline(**kw):
    assert kw["weights"] == "imagenet" and kw["pooling"] == "avg" and not kw["include_top"]
    raise Exception("URL fetch failure on https://storage.googleapis.com/...")
  monkeypatch.setattr(keras.applications, "InceptionV3", offline)
  with pytest.raises(DataUnavailableError) as e:
    inception.load_model()
  helpers.one_line(e, "--eval_inception", inception.INCEPTION_FILE)


def test_scores_of_a_sample_against_itself_and_a_shifted_one(net):
  rng = np.random.default_rng(1)
  a = net(rng.uniform(-1, 1, (60, 32, 32, 1)).astype(np.float32))
  b = net(np.clip(rng.uniform(-1, 1, (60, 32, 32, 1)) + 0.5, -1, 1).astype(np.float32))
  same, other = inception.scores(a, a, 30), inception.scores(a, b, 30)
  assert same["fid"] == pytest.approx(0, abs=1e-6) and other["fid"] > 10 * max(same["fid"], 1e-6)
  assert other["kid"] > same["kid"] and same["n_fake"] == same["n_real"] == 60


def test_settings_fid_and_kid_cannot_score_are_one_line():
  from jdbw import data, methods
  from jdbw.evaluation import evaluator
  with pytest.raises(ConfigError) as e:
    evaluator.EvalConfig(kid_subset_size=1).validate()
  helpers.one_line(e, "--eval_kid_subset_size", ">= 2")
  points = {"x": data.DomainSpec(source="mixture2d", name="x"),
            "y": data.DomainSpec(source="mixture2d:rotate=20", name="y")}
  m = methods.build("jd", networks="mlp", point_dim=2, noise_dim=2)
  with pytest.raises(ConfigError) as e:   # before any feature network loads
    evaluator.Evaluator(m, points, evaluator.EvalConfig(split="test", samples=20,
                                                        noise_sources=4, inception=True))
  helpers.one_line(e, "--eval_inception", "points")
