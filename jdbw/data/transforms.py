"""Per-draw image transforms in TensorFlow (run inside tf.data on the host CPU).

All are stateless: the randomness of a draw comes from its own seed, so the same
pipeline seed gives the same stream.
"""

from __future__ import annotations

import math

from jdbw.errors import ConfigError


class _TensorFlow:
  """TensorFlow, imported on first use (2.6 s): an entry point that stops at a bad flag,
  or runs on 2-D points, never loads it."""

  def __getattr__(self, name):
    import tensorflow
    return getattr(tensorflow, name)


tf = _TensorFlow()

TRANSFORMS = ("plain", "sr")

# SR-MNIST geometry (paper §4.1, authors' code): 28 -> pad 7 -> 42 -> rotate -> crop 33.
# Sources of another size are first resized to 28 so the relative geometry is kept.
SR_BASE = 28
SR_PAD = 7
SR_MAX_ANGLE = math.pi / 12  # 15 degrees
SR_CROP = 33


def to_unit_range(image: tf.Tensor) -> tf.Tensor:
  """uint8-valued [0, 255] -> float32 [-1, 1]."""
  return tf.clip_by_value(tf.cast(image, tf.float32) / 127.5 - 1.0, -1.0, 1.0)


def match_channels(image: tf.Tensor, channels: int) -> tf.Tensor:
  have = image.shape[-1]
  if have == channels:
    return image
  if have == 1 and channels == 3:
    return tf.tile(image, [1, 1, 3])
  if have == 3 and channels == 1:
    return tf.image.rgb_to_grayscale(image)
  raise ValueError(f"cannot convert {have} channels to {channels}")


def edge_pad(image: tf.Tensor, pad: int) -> tf.Tensor:
  """Pads H and W by repeating the border pixels (numpy's 'edge' mode)."""
  h, w = image.shape[0], image.shape[1]
  rows = tf.clip_by_value(tf.range(-pad, h + pad), 0, h - 1)
  cols = tf.clip_by_value(tf.range(-pad, w + pad), 0, w - 1)
  return tf.gather(tf.gather(image, rows, axis=0), cols, axis=1)


def rotate(image: tf.Tensor, angle: tf.Tensor) -> tf.Tensor:
  """Rotates an HWC float image about its centre, bilinear, nearest-edge fill."""
  h, w = float(image.shape[0]), float(image.shape[1])
  cos, sin = tf.cos(angle), tf.sin(angle)
  # Output pixel (x, y) samples input at A @ (x, y, 1): rotation about the centre.
  x_off = ((w - 1) - (cos * (w - 1) - sin * (h - 1))) / 2.0
  y_off = ((h - 1) - (sin * (w - 1) + cos * (h - 1))) / 2.0
  transform = tf.stack([cos, -sin, x_off, sin, cos, y_off, 0.0, 0.0])[None]
  out = tf.raw_ops.ImageProjectiveTransformV3(
      images=image[None], transforms=transform,
      output_shape=tf.constant([int(h), int(w)]), fill_value=0.0,
      interpolation="BILINEAR", fill_mode="NEAREST")
  return out[0]


def resize(image: tf.Tensor, size: int) -> tf.Tensor:
  if image.shape[0] == size and image.shape[1] == size:
    return image
  return tf.image.resize(image, [size, size], method="bilinear", antialias=True)


def sr_transform(image: tf.Tensor, seed: tf.Tensor, size: int) -> tf.Tensor:
  """SR-MNIST: edge-pad 7, rotate U(-15°, 15°) bilinear, random 33x33 crop, resize."""
  angle_seed, crop_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
  x = edge_pad(resize(tf.cast(image, tf.float32), SR_BASE), SR_PAD)
  angle = tf.random.stateless_uniform([], angle_seed, -SR_MAX_ANGLE, SR_MAX_ANGLE)
  x = rotate(x, angle)
  x = tf.image.stateless_random_crop(x, [SR_CROP, SR_CROP, x.shape[-1]], crop_seed)
  return resize(x, size)


def plain_transform(image: tf.Tensor, seed: tf.Tensor, size: int) -> tf.Tensor:
  del seed  # Deterministic.
  return resize(tf.cast(image, tf.float32), size)


def get_transform(name: str, what: str = "--transform"):
  if name == "sr":
    return sr_transform
  if name == "plain":
    return plain_transform
  raise ConfigError(f"{what}: unknown transform {name!r}; expected one of {TRANSFORMS}")
