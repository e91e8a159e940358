"""Image features for FID and KID: Keras's InceptionV3 (its 2048-d average-pooled last
block, the features FID is defined on), or any Keras model file.

InceptionV3's ImageNet weights are downloaded by Keras on first use and cached in
`~/.keras/models` (`inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5`); offline,
copy that file there from an online machine, or give a model file of your own. These are
Keras's ImageNet weights, not the TF-slim graph of the original FID code
(`pt_inception-2015-12-05`), so jdbw's FIDs compare with each other, not to the decimal
with published ones. Images enter as the evaluation holds them: [-1, 1] (InceptionV3's
own input range), grey repeated to RGB, resized bilinearly to the network's input size.
"""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import numpy as np

from jdbw.errors import ConfigError, DataUnavailableError

INCEPTION_FILE = "inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5"


def load_model(path: str = ""):
  """The Keras feature network: the model file at `path`, else InceptionV3 (pool)."""
  import keras
  if path:
    if not os.path.isfile(path):
      raise ConfigError(f"--eval_feature_model: no such file {path!r}")
    try:
      return keras.models.load_model(path, compile=False)
    except Exception as e:   # noqa: BLE001 - any unreadable file is one line
      raise ConfigError(f"--eval_feature_model: {path} is not a Keras model file"
                        f" ({type(e).__name__}: {str(e).splitlines()[0][:120]})") from None
  try:
    return keras.applications.InceptionV3(include_top=False, weights="imagenet",
                                          pooling="avg", input_shape=(299, 299, 3))
  except Exception as e:   # noqa: BLE001 - a failed download is one line
    raise DataUnavailableError(
        f"--eval_inception: InceptionV3's ImageNet weights are not in ~/.keras/models and"
        f" could not be downloaded ({type(e).__name__}); copy {INCEPTION_FILE} there from"
        " an online machine, or pass --eval_feature_model=FILE") from None


class FeatureNet:
  """`features(images) -> [N, F]` of a Keras model, batched."""

  def __init__(self, model, batch_size: int = 100):
    self.model, self.batch_size = model, batch_size
    shape = tuple(model.input_shape)
    self.size = shape[1:3] if None not in shape[1:3] else None   # None: any size
    self.channels = shape[3]
    self.dim = int(np.prod(model.output_shape[1:]))

  @classmethod
  def from_path(cls, path: str = "", batch_size: int = 100) -> "FeatureNet":
    return cls(load_model(path), batch_size)

  def prepare(self, images) -> np.ndarray:
    """[N, H, W, C] in [-1, 1] -> the network's input: channels repeated or checked,
    resized bilinearly to its size."""
    x = np.asarray(images, np.float32)
    if x.ndim != 4:
      raise ValueError(f"images must be [N, H, W, C]; got {x.shape}")
    if x.shape[-1] != self.channels:
      if x.shape[-1] != 1:
        raise ConfigError(f"--eval_feature_model: the network takes {self.channels} channels;"
                          f" the images have {x.shape[-1]}")
      x = np.repeat(x, self.channels, axis=-1)
    if self.size is not None and x.shape[1:3] != self.size:
      x = np.asarray(jax.image.resize(jnp.asarray(x), (len(x), *self.size, x.shape[-1]),
                                      "linear"))
    return x

  def __call__(self, images) -> np.ndarray:
    import keras
    outs = []
    for i in range(0, len(images), self.batch_size):
      x = self.prepare(images[i:i + self.batch_size])
      out = keras.ops.convert_to_numpy(self.model(x, training=False))
      outs.append(np.asarray(out, np.float64).reshape(len(x), -1))
    return np.concatenate(outs)


def scores(features_fake, features_real, kid_subset_size: int, seed: int = 0) -> dict:
  """{'fid', 'kid', 'kid_std', 'n_fake', 'n_real'} of two feature samples."""
  from jdbw.evaluation import metrics
  kid, kid_std = metrics.kid(features_fake, features_real, kid_subset_size, seed=seed)
  return {"fid": metrics.fd_classifier(features_fake, features_real), "kid": kid,
          "kid_std": kid_std, "n_fake": len(features_fake), "n_real": len(features_real)}
