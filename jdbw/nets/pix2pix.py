"""pix2pix's generator (Isola et al. 2017; `networks.py` of pytorch-CycleGAN-and-pix2pix,
`UnetGenerator`) and BiCycleGAN's encoder (Zhu et al. 2017; `E_ResNet` of the BicycleGAN
code), as flax.linen modules (NHWC). Its discriminator is the same PatchGAN
as CycleGAN's with batch norm (`jdbw.nets.cyclegan.PatchDiscriminator`, norm='bn'), on
the (x, y) pair concatenated along channels.

`UnetGenerator`: `n_down` levels of 4x4/2 convolutions (widths ngf, 2 ngf, 4 ngf, then
8 ngf) down to 1x1, and 4x4/2 transposed convolutions back up, each up-sampling level's
output concatenated with the skip of the same size (skip first, as `torch.cat([x,
model(x)], 1)`); LeakyReLU 0.2 down, ReLU up, batch norm on every level but the outermost
(both ways) and the innermost down-sampling, no biases but on the last layer; tanh out.
Dropout 0.5 follows the up-sampling of the `dropout_levels` innermost levels below the
innermost one: pix2pix's noise (the reference has it on the 8-ngf levels between the
fifth and the innermost: 3 at 256x256, 2 at 128x128, none at 32x32; here 3 at every
size, so that a 32x32 U-Net is stochastic too; docs/paper_map.md).

Dropout masks are drawn per sample from `keys` ([B] PRNG keys, uint32 [B, 2]), one key
per example, so the masks do not depend on how the batch is split over devices; batch
norm uses the global batch's statistics (`axis_name`) in training and the running
averages (momentum 0.1, as PyTorch's) otherwise.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from jdbw.nets import layers
from jdbw.nets.blocks import instance_norm
from jdbw.nets.cyclegan import PatchDiscriminator, _batch_norm

_PAD = ((1, 1), (1, 1))
_UP = ((2, 2), (2, 2))    # PyTorch's ConvTranspose2d(4, 2, 1): 2x


def dropout(h, keys, salt: int, rate: float = 0.5):
  """Inverted dropout with a mask per sample from its own key (`keys` [B, 2])."""
  keep = jax.vmap(lambda k: jax.random.bernoulli(jax.random.fold_in(k, salt), 1 - rate,
                                                 h.shape[1:]))(keys)
  return jnp.where(keep, h / (1 - rate), 0).astype(h.dtype)


class UnetGenerator(layers.ConvNet):
  """pix2pix's U-Net (module docstring); `out_channels` of the target. `norm`: 'bn'
  (pix2pix: batch norm, no biases before it) or 'in' (BiCycleGAN's default: instance
  norm, per sample, with biases)."""
  out_channels: int
  ngf: int = 64
  n_down: int = 8
  dropout_levels: int = 3
  axis_name: str | None = None
  norm: str = "bn"

  @nn.compact
  def __call__(self, x, keys, train: bool = True):
    n = self.n_down
    width = lambda i: self.ngf * min(2 ** i, 8)
    if self.norm == "bn":
      bn = lambda h: _batch_norm(train, self.axis_name)(layers.at_least_float32(h))
    else:
      bn = instance_norm
    bias = self.norm != "bn"
    conv = lambda i, use_bias=bias: layers.Conv(width(i), (4, 4), 2, _PAD, use_bias=use_bias,
                                                **self.kw)
    skips, h = [], x
    for i in range(n):   # down: level i's input is kept for its skip
      skips.append(h)
      if i == 0:
        h = conv(i)(h)   # pix2pix: no bias anywhere but on the last layer
      elif i < n - 1:
        h = bn(conv(i)(nn.leaky_relu(h, 0.2)))
      else:
        h = conv(i)(nn.leaky_relu(h, 0.2))    # innermost: no norm
    for i in reversed(range(1, n)):   # up: level i's output has level i - 1's width
      h = layers.conv_transpose(width(i - 1), (4, 4), 2, _UP, use_bias=bias,
                                **self.kw)(nn.relu(h))
      h = bn(h)
      if n - 1 - self.dropout_levels <= i < n - 1:
        h = dropout(h, keys, i)
      h = jnp.concatenate([skips[i], h.astype(skips[i].dtype)], axis=-1)
    h = layers.conv_transpose(self.out_channels, (4, 4), 2, _UP, **self.kw)(nn.relu(h))
    return jnp.tanh(layers.at_least_float32(h))


class ResNetEncoder(layers.ConvNet):
  """BiCycleGAN's encoder E (`E_ResNet`, vaeLike): a 4x4/2 convolution (nef), then
  `n_blocks - 1` residual blocks, each halving the size (instance norm, LeakyReLU 0.2,
  3x3 conv, instance norm, LeakyReLU, 3x3 conv + 2x2 mean pool; shortcut: mean pool +
  1x1 conv), widths nef * min(n + 1, 4); LeakyReLU, the mean over the remaining 8x8, and
  two linear heads: (mu, logvar) of z, each [B, nz]. n_blocks = log2(resolution) − 3
  (the reference's resnet_256: 5, resnet_128: 4)."""
  nz: int = 8
  nef: int = 64
  n_blocks: int = 5

  @nn.compact
  def __call__(self, x):
    act = lambda h: nn.leaky_relu(h, 0.2)
    pool = lambda h: nn.avg_pool(h, (2, 2), (2, 2))
    h = layers.Conv(self.nef, (4, 4), 2, _PAD, **self.kw)(x)
    for n in range(1, self.n_blocks):
      out = self.nef * min(n + 1, 4)
      r = layers.Conv(h.shape[-1], (3, 3), 1, _PAD, **self.kw)(act(instance_norm(h)))
      r = pool(layers.Conv(out, (3, 3), 1, _PAD, **self.kw)(act(instance_norm(r))))
      h = r + layers.Conv(out, (1, 1), 1, "VALID", **self.kw)(pool(h))
    h = jnp.mean(layers.at_least_float32(act(h)), axis=(1, 2))
    return (layers.Dense(self.nz, name="mu")(h), layers.Dense(self.nz, name="logvar")(h))


class MultiScalePatchDiscriminator(layers.ConvNet):
  """BiCycleGAN's multi-scale PatchGAN (`D_NLayersMulti` of the BicycleGAN code, its
  `--num_Ds`): `scales` PatchGANs (`jdbw.nets.cyclegan.PatchDiscriminator`), the first on
  the image, each next one on the image average-pooled once more (3x3, stride 2, padding
  1 not counted) with the reference's width for it (scale i of 1, 2, ...: the previous
  width / 2**i, rounded: ndf, ndf / 2, ndf / 8, ...). A list of [B, h, w] score maps,
  one per scale; the LSGAN loss sums the scales' means (`jdbw.losses.lsgan_per_sample`),
  as the reference's GANLoss."""
  ndf: int = 64
  n_layers: int = 3
  scales: int = 2
  norm: str = "in"

  @nn.compact
  def __call__(self, x, train: bool = True):
    outs, ndf = [], self.ndf
    for i in range(self.scales):
      if i:
        ndf = int(round(ndf / 2 ** i))
        x = nn.avg_pool(x, (3, 3), (2, 2), padding=((1, 1), (1, 1)), count_include_pad=False)
      outs.append(PatchDiscriminator(ndf, self.n_layers, self.norm, **self.kw)(x, train))
    return outs
