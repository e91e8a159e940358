"""MUNIT's networks (Huang et al. 2018), the paper's benchmark, as flax.linen modules.

Per domain a generator = content encoder + style encoder + AdaIN decoder whose AdaIN
parameters come from an MLP of the style code; a multi-scale marginal discriminator
(LSGAN). Layer for layer as MUNIT's `networks.py` (Conv2dBlock: reflect pad -> conv ->
norm -> activation), NHWC. Differences we chose: flax's default initialisers instead
of MUNIT's kaiming/gaussian ones, and MUNIT's decoder LayerNorm (per-sample over C, H, W
with per-channel affine) uses the variance rather than the unbiased std.
No spectral norm and no batch statistics: every call is per sample.
"""

from __future__ import annotations

import functools

import flax.linen as nn

from jdbw.nets import layers
from jdbw.nets.blocks import ConvBlock, ResBlock, upsample2x


class ContentEncoder(layers.ConvNet):
  """7x7 conv(dim) -> n_down x 4x4/2 conv(2x) -> n_res ResBlocks, instance norm."""
  dim: int = 64
  n_down: int = 1
  n_res: int = 2

  @nn.compact
  def __call__(self, x):
    d, kw = self.dim, self.kw
    x = ConvBlock(d, 7, 1, 3, "in", "relu", **kw)(x)
    for _ in range(self.n_down):
      d *= 2
      x = ConvBlock(d, 4, 2, 1, "in", "relu", **kw)(x)
    for _ in range(self.n_res):
      x = ResBlock(d, norm="in", layout="munit", **kw)(x)
    return x


class StyleEncoder(layers.ConvNet):
  """7x7 conv(dim) -> 2 x 4x4/2 conv(2x) -> (n_down - 2) x 4x4/2 conv -> avg -> 1x1 (style)."""
  dim: int = 64
  style_dim: int = 8
  n_down: int = 4

  @nn.compact
  def __call__(self, x):
    d, kw = self.dim, self.kw
    x = ConvBlock(d, 7, 1, 3, "none", "relu", **kw)(x)
    for i in range(self.n_down):
      if i < 2:
        d *= 2
      x = ConvBlock(d, 4, 2, 1, "none", "relu", **kw)(x)
    x = layers.at_least_float32(x).mean((1, 2))
    return layers.Dense(self.style_dim)(x)


class Decoder(layers.ConvNet):
  """n_res AdaIN ResBlocks -> n_up x (2x nearest upsample, 5x5 conv(dim/2), LN) -> 7x7 tanh."""
  dim: int = 128
  n_up: int = 1
  n_res: int = 2
  out_channels: int = 1

  @nn.compact
  def __call__(self, content, adain_params):
    x, d, kw = content, self.dim, self.kw
    for i in range(self.n_res):
      x = ResBlock(d, norm="adain", layout="munit", **kw)(x, adain=adain_params[i])
    for _ in range(self.n_up):
      x = upsample2x(x)
      d //= 2
      x = ConvBlock(d, 5, 1, 2, "ln", "relu", **kw)(x)
    return layers.at_least_float32(ConvBlock(self.out_channels, 7, 1, 3, "none", "tanh", **kw)(x))


class MLP(nn.Module):
  """style -> mlp_dim -> mlp_dim -> out (ReLU between), MUNIT's AdaIN-parameter MLP."""
  mlp_dim: int = 256
  out: int = 1024

  @nn.compact
  def __call__(self, s):
    s = nn.relu(layers.Dense(self.mlp_dim)(s))
    s = nn.relu(layers.Dense(self.mlp_dim)(s))
    return layers.Dense(self.out)(s)


class AdaINGenerator(layers.ConvNet):
  """One domain's MUNIT generator: `encode(x) -> (content, style)`, `decode(c, s) -> x`."""
  out_channels: int = 1
  dim: int = 64
  style_dim: int = 8
  mlp_dim: int = 256
  n_down: int = 1
  n_res: int = 2
  style_down: int = 4

  def setup(self):
    self.content_enc = ContentEncoder(self.dim, self.n_down, self.n_res, **self.kw)
    self.style_enc = StyleEncoder(self.dim, self.style_dim, self.style_down, **self.kw)
    self.content_dim = self.dim * 2 ** self.n_down
    self.dec = Decoder(self.content_dim, self.n_down, self.n_res, self.out_channels, **self.kw)
    self.mlp = MLP(self.mlp_dim, 4 * self.n_res * self.content_dim)

  def encode(self, x):
    return self.content_enc(x), self.style_enc(x)

  def decode(self, content, style):
    """AdaIN parameters in MUNIT's order: per AdaIN layer (bias = mean, scale = std)."""
    p = self.mlp(style)
    d = self.content_dim
    chunks = [p[:, i * d:(i + 1) * d] for i in range(4 * self.n_res)]
    adain = [((chunks[4 * i], chunks[4 * i + 1]), (chunks[4 * i + 2], chunks[4 * i + 3]))
             for i in range(self.n_res)]
    return self.dec(content, adain)

  def __call__(self, x, style):
    """encode then decode with another style (used by init to create every parameter)."""
    content, _ = self.encode(x)
    return self.decode(content, style)


class MsImageDis(layers.ConvNet):
  """Multi-scale LSGAN discriminator: per scale 4x4/2 lrelu convs -> 1x1 conv to a map.

  Returns a list of [B, h, w] maps, one per scale (3x3/2 average pooling between scales).
  """
  dim: int = 64
  n_layer: int = 4
  num_scales: int = 1

  @nn.compact
  def __call__(self, x):
    outs, kw = [], self.kw
    for _ in range(self.num_scales):
      h, d = x, self.dim
      h = ConvBlock(d, 4, 2, 1, "none", "lrelu", **kw)(h)
      for _ in range(self.n_layer - 1):
        d *= 2
        h = ConvBlock(d, 4, 2, 1, "none", "lrelu", **kw)(h)
      outs.append(layers.at_least_float32(layers.Conv(1, (1, 1), 1, "VALID", **kw)(h)[..., 0]))
      # count_include_pad=False average pooling, as MUNIT's downsampler.
      x = nn.avg_pool(x, (3, 3), (2, 2), padding=((1, 1), (1, 1)), count_include_pad=False)
    return outs


TinyAdaINGenerator = functools.partial(AdaINGenerator, dim=4, mlp_dim=8)
TinyMsImageDis = functools.partial(MsImageDis, dim=4)
