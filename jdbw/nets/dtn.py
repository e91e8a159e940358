"""The semantic translators' networks (DTN, XGAN), as flax.linen modules (NHWC).

DCGAN-style encoders and decoders between an image of resolution r (a multiple of 8) and
an embedding vector, built from halves so that XGAN can share some layers between its
domains and DTN can compose them whole:

- `EncoderIn`: 4x4/2 conv(dim) -> 4x4/2 conv(2 dim)                    (r -> r/4)
- `EncoderOut`: 4x4/2 conv(4 dim) -> (r/8)x(r/8) valid conv to `features`  (-> [B, F])
- `DecoderIn`: (r/8)x(r/8) transposed conv from 1x1 (4 dim) -> 4x4/2 transposed (2 dim)
- `DecoderOut`: 4x4/2 transposed (dim) -> 4x4/2 transposed (channels) -> tanh
- `Encoder` = EncoderIn, EncoderOut; `Decoder` = DecoderIn, DecoderOut.

LeakyReLU 0.2 after every layer but the last of each network. `norm='bn'`: batch norm
over the *global* batch (`axis_name`) after every convolution but the first of an
encoder and the image layer of a decoder, the normalised convolutions without bias, as
`jdbw.nets.cyclegan`'s DCGAN pieces; `norm='none'` (DTN's fixed f): biases, no
statistics, so each sample's output is its own. The taller paper networks (DTN's
digit f: 3x3 convolutions 64-128-256-128 with max pooling) are not reproduced; the
shapes (a 128-d embedding, four up-sampling layers to 32x32) are.
"""

from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp

from jdbw.nets import layers
from jdbw.nets.cyclegan import _UP_4, _batch_norm

NORMS = ("bn", "none")
_PAD = ((1, 1), (1, 1))


class _Net(layers.ConvNet):
  dim: int = 64
  norm: str = "bn"
  axis_name: str | None = None   # global batch statistics under shard_map / pmap

  def conv(self, features, kernel, strides, padding, transpose=False, normed=True):
    use_bias = not (normed and self.norm == "bn")
    return layers.Conv(features, kernel, strides, padding, transpose=transpose,
                       use_bias=use_bias, **self.kw)

  def act(self, h, train, normed=True):
    if normed and self.norm == "bn":
      h = _batch_norm(train, self.axis_name)(layers.at_least_float32(h))
    return nn.leaky_relu(h, 0.2)


def _final_kernel(h) -> tuple[int, int]:
  return (h.shape[1], h.shape[2])


class EncoderIn(_Net):
  """Image [B, r, r, c] -> features [B, r/4, r/4, 2 dim]."""

  @nn.compact
  def __call__(self, x, train: bool = True):
    h = self.act(self.conv(self.dim, (4, 4), 2, _PAD, normed=False)(x), train, normed=False)
    return self.act(self.conv(2 * self.dim, (4, 4), 2, _PAD)(h), train)


class EncoderOut(_Net):
  """Features [B, r/4, r/4, .] -> embedding [B, features]."""
  features: int = 128

  @nn.compact
  def __call__(self, h, train: bool = True):
    h = self.act(self.conv(4 * self.dim, (4, 4), 2, _PAD)(h), train)
    out = self.conv(self.features, _final_kernel(h), 1, "VALID", normed=False)(h)
    return layers.at_least_float32(out[:, 0, 0, :])


class DecoderIn(_Net):
  """Embedding [B, F] -> features [B, r/4, r/4, 2 dim]."""
  resolution: int = 32

  @nn.compact
  def __call__(self, e, train: bool = True):
    k = self.resolution // 8
    h = e.reshape(e.shape[0], 1, 1, e.shape[-1])
    h = self.act(self.conv(4 * self.dim, (k, k), 1, "VALID", transpose=True)(h), train)
    return self.act(self.conv(2 * self.dim, (4, 4), 2, _UP_4, transpose=True)(h), train)


class DecoderOut(_Net):
  """Features [B, r/4, r/4, .] -> image [B, r, r, out_channels] in (-1, 1)."""
  out_channels: int = 1

  @nn.compact
  def __call__(self, h, train: bool = True):
    h = self.act(self.conv(self.dim, (4, 4), 2, _UP_4, transpose=True)(h), train)
    h = self.conv(self.out_channels, (4, 4), 2, _UP_4, transpose=True, normed=False)(h)
    return jnp.tanh(layers.at_least_float32(h))


class Encoder(_Net):
  """Image -> embedding [B, features] (EncoderIn, EncoderOut)."""
  features: int = 128

  @nn.compact
  def __call__(self, x, train: bool = True):
    kw = dict(dim=self.dim, norm=self.norm, axis_name=self.axis_name, **self.kw)
    return EncoderOut(features=self.features, **kw)(EncoderIn(**kw)(x, train), train)


class Decoder(_Net):
  """Embedding -> image (DecoderIn, DecoderOut)."""
  resolution: int = 32
  out_channels: int = 1

  @nn.compact
  def __call__(self, e, train: bool = True):
    kw = dict(dim=self.dim, norm=self.norm, axis_name=self.axis_name, **self.kw)
    h = DecoderIn(resolution=self.resolution, **kw)(e, train)
    return DecoderOut(out_channels=self.out_channels, **kw)(h, train)


class EmbeddingCritic(nn.Module):
  """XGAN's domain classifier c on embeddings [B, F] -> one logit per sample: an MLP
  (LeakyReLU 0.2) of `num_layers` hidden layers."""
  features: int = 128
  num_layers: int = 2

  @nn.compact
  def __call__(self, e):
    h = e.astype(jnp.float32)
    for _ in range(self.num_layers):
      h = nn.leaky_relu(nn.Dense(self.features)(h), 0.2)
    return nn.Dense(1)(h)[:, 0]
