"""CycleGAN's and DistanceGAN's networks, as flax.linen modules (NHWC).

CycleGAN (Zhu et al. 2017; `networks.py` of pytorch-CycleGAN-and-pix2pix):
- `ResnetGenerator`: reflect-pad 7x7 conv(ngf) -> `n_down` 3x3/2 convs (x2 width) ->
  `n_blocks` residual blocks (reflect pad, 3x3, instance norm) -> `n_down` 3x3/2
  transposed convs -> reflect-pad 7x7 conv -> tanh; instance norm without affine, ReLU.
  The reference's 256x256 sizes are ngf 64, 9 blocks (6 at 128x128), n_down 2.
- `PatchDiscriminator` (the reference's NLayerDiscriminator, "PatchGAN"): 4x4/2 conv(ndf)
  + LeakyReLU 0.2, then `n_layers - 1` 4x4/2 convs (width x2, at most 8 ndf) with
  instance norm, one 4x4/1 conv, and a 4x4/1 conv to a map of patch scores; the
  reference's sizes are ndf 64, 3 layers (70x70 patches).
  Every call is per sample (instance norm only).

DistanceGAN's MNIST <-> SVHN networks (Benaim & Wolf 2017, the authors' `cyclegan_arch/
mnist_to_svhn/model.py`, after mnist-svhn-transfer):
- `EncoderDecoderGenerator`: 4x4/2 conv(dim) -> 4x4/2 conv(2 dim) -> two 3x3 convs (2 dim)
  -> 4x4/2 transposed conv(dim) -> 4x4/2 transposed conv(channels) -> tanh; batch norm
  after every layer but the last, LeakyReLU 0.05, no biases.
- `DCGANDiscriminator`: 4x4/2 convs dim, 2 dim, 4 dim (batch norm but on the first),
  LeakyReLU 0.05, then a 4x4 valid conv to one score per image (at 32x32).
  Batch norm normalises over the *global* batch (`axis_name`, the device axis under
  shard_map/pmap), so any device count computes the same function; in training mode the
  statistics of the batch are used and the running averages (momentum 0.1 as PyTorch's)
  updated; inference (`train=False`) uses the running averages.
"""

from __future__ import annotations


import flax.linen as nn
import jax.numpy as jnp

from jdbw.nets import layers
from jdbw.nets.blocks import ConvBlock, ResBlock, instance_norm

# PyTorch's ConvTranspose2d(k, s=2, p, output_padding) as padding of the dilated input:
# (k - 1 - p, k - 1 - p + output_padding).
_UP_3 = ((1, 2), (1, 2))    # k 3, p 1, output_padding 1 (CycleGAN): 2x
_UP_4 = ((2, 2), (2, 2))    # k 4, p 1 (DistanceGAN): 2x


class ResnetGenerator(layers.ConvNet):
  """CycleGAN's ResNet generator (module docstring); `out_channels` of the target."""
  out_channels: int
  ngf: int = 64
  n_blocks: int = 9
  n_down: int = 2

  @nn.compact
  def __call__(self, x):
    d = self.ngf
    h = ConvBlock(d, 7, 1, 3, "in", "relu", **self.kw)(x)
    for _ in range(self.n_down):
      d *= 2
      h = layers.Conv(d, (3, 3), 2, ((1, 1), (1, 1)), **self.kw)(h)
      h = nn.relu(instance_norm(h))
    for _ in range(self.n_blocks):
      h = ResBlock(d, norm="in", layout="munit", **self.kw)(h)
    for _ in range(self.n_down):
      d //= 2
      h = layers.conv_transpose(d, (3, 3), 2, _UP_3, **self.kw)(h)
      h = nn.relu(instance_norm(h))
    h = ConvBlock(self.out_channels, 7, 1, 3, "none", "none", **self.kw)(h)
    return jnp.tanh(layers.at_least_float32(h))


class PatchDiscriminator(layers.ConvNet):
  """The reference's PatchGAN: a [B, h, w] map of patch scores (module docstring).
  `norm`: 'in' (CycleGAN: instance norm, per sample) or 'bn' (pix2pix: batch norm over
  the global batch, `axis_name`, the normalised convolutions without bias)."""
  ndf: int = 64
  n_layers: int = 3
  norm: str = "in"
  axis_name: str | None = None

  @nn.compact
  def __call__(self, x, train: bool = True):
    pad = ((1, 1), (1, 1))
    h = nn.leaky_relu(layers.Conv(self.ndf, (4, 4), 2, pad, **self.kw)(x), 0.2)
    for n in range(1, self.n_layers + 1):
      stride = 2 if n < self.n_layers else 1
      h = layers.Conv(self.ndf * min(2 ** n, 8), (4, 4), stride, pad,
                      use_bias=self.norm != "bn", **self.kw)(h)
      h = (_batch_norm(train, self.axis_name)(layers.at_least_float32(h))
           if self.norm == "bn" else instance_norm(h))
      h = nn.leaky_relu(h, 0.2)
    out = layers.Conv(1, (4, 4), 1, pad, **self.kw)(h)
    return layers.at_least_float32(out[..., 0])


def _batch_norm(train: bool, axis_name, name=None):
  return nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5,
                      axis_name=axis_name, name=name)


class _DCGANNet(layers.ConvNet):
  """DistanceGAN's networks' shared settings and pieces (bias-free convolutions, leaky
  ReLU 0.05, batch norm over the global batch)."""
  dim: int = 64
  axis_name: str | None = None   # global batch statistics under shard_map / pmap

  def pieces(self, train: bool):
    """(conv keywords, activation, batch norm, 1-pixel padding) for one call."""
    kw = dict(self.kw, use_bias=False)
    act = lambda h: nn.leaky_relu(h, 0.05)
    bn = lambda h: _batch_norm(train, self.axis_name)(layers.at_least_float32(h))
    return kw, act, bn, ((1, 1), (1, 1))


class EncoderDecoderGenerator(_DCGANNet):
  """DistanceGAN's 32x32 generator (module docstring)."""
  out_channels: int = 1

  @nn.compact
  def __call__(self, x, train: bool = True):
    kw, act, bn, pad = self.pieces(train)
    h = act(bn(layers.Conv(self.dim, (4, 4), 2, pad, **kw)(x)))
    h = act(bn(layers.Conv(2 * self.dim, (4, 4), 2, pad, **kw)(h)))
    h = act(bn(layers.Conv(2 * self.dim, (3, 3), 1, pad, **kw)(h)))
    h = act(bn(layers.Conv(2 * self.dim, (3, 3), 1, pad, **kw)(h)))
    h = act(bn(layers.conv_transpose(self.dim, (4, 4), 2, _UP_4, **kw)(h)))
    h = layers.conv_transpose(self.out_channels, (4, 4), 2, _UP_4, **kw)(h)
    return jnp.tanh(layers.at_least_float32(h))


class DCGANDiscriminator(_DCGANNet):
  """DistanceGAN's 32x32 discriminator: a [B, h, w] map (1x1 at 32x32). `outputs` > 1
  (DTN's ternary D): [B, outputs] logits, the map averaged over its positions."""
  outputs: int = 1

  @nn.compact
  def __call__(self, x, train: bool = True):
    kw, act, bn, pad = self.pieces(train)
    h = act(layers.Conv(self.dim, (4, 4), 2, pad, **kw)(x))
    h = act(bn(layers.Conv(2 * self.dim, (4, 4), 2, pad, **kw)(h)))
    h = act(bn(layers.Conv(4 * self.dim, (4, 4), 2, pad, **kw)(h)))
    out = layers.at_least_float32(layers.Conv(self.outputs, (4, 4), 1, "VALID", **kw)(h))
    return out[..., 0] if self.outputs == 1 else out.mean(axis=(1, 2))


class BetaNet(layers.ConvNet):
  """IrwGAN's reweighting network (Mid-Push/IrwGAN `BetaNet`): `n_layers` 4x4/2 reflect-
  padded convs (width x2 each, at most 8 dim; instance norm but on the first; ReLU), the
  map summed over its positions, a linear layer to one logit per image."""
  dim: int = 64
  n_layers: int = 4

  @nn.compact
  def __call__(self, x):
    h = x
    for n in range(self.n_layers):
      h = jnp.pad(h, ((0, 0), (1, 1), (1, 1), (0, 0)), mode="reflect")
      h = layers.Conv(self.dim * min(2 ** n, 8), (4, 4), 2, "VALID", **self.kw)(h)
      h = nn.relu(instance_norm(h) if n else h)
    h = layers.at_least_float32(h).sum(axis=(1, 2))
    return nn.Dense(1)(h)[:, 0]
