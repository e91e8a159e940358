"""pix2pix's generator (Isola et al. 2017; `networks.py` of pytorch-CycleGAN-and-pix2pix,
`UnetGenerator`), as a flax.linen module (NHWC). Its discriminator is the same PatchGAN
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
from jdbw.nets.cyclegan import _batch_norm

_PAD = ((1, 1), (1, 1))
_UP = ((2, 2), (2, 2))    # PyTorch's ConvTranspose2d(4, 2, 1): 2x


def dropout(h, keys, salt: int, rate: float = 0.5):
  """Inverted dropout with a mask per sample from its own key (`keys` [B, 2])."""
  keep = jax.vmap(lambda k: jax.random.bernoulli(jax.random.fold_in(k, salt), 1 - rate,
                                                 h.shape[1:]))(keys)
  return jnp.where(keep, h / (1 - rate), 0).astype(h.dtype)


class UnetGenerator(layers.ConvNet):
  """pix2pix's U-Net (module docstring); `out_channels` of the target."""
  out_channels: int
  ngf: int = 64
  n_down: int = 8
  dropout_levels: int = 3
  axis_name: str | None = None

  @nn.compact
  def __call__(self, x, keys, train: bool = True):
    n = self.n_down
    width = lambda i: self.ngf * min(2 ** i, 8)
    bn = lambda h: _batch_norm(train, self.axis_name)(layers.at_least_float32(h))
    conv = lambda i, **kw: layers.Conv(width(i), (4, 4), 2, _PAD, **kw, **self.kw)
    skips, h = [], x
    for i in range(n):   # down: level i's input is kept for its skip
      skips.append(h)
      if i == 0:
        h = conv(i, use_bias=False)(h)   # the reference: no bias anywhere before batch norm
      elif i < n - 1:
        h = bn(conv(i, use_bias=False)(nn.leaky_relu(h, 0.2)))
      else:
        h = conv(i, use_bias=False)(nn.leaky_relu(h, 0.2))    # innermost: no norm
    for i in reversed(range(1, n)):   # up: level i's output has level i - 1's width
      h = layers.conv_transpose(width(i - 1), (4, 4), 2, _UP, use_bias=False,
                                **self.kw)(nn.relu(h))
      h = bn(h)
      if n - 1 - self.dropout_levels <= i < n - 1:
        h = dropout(h, keys, i)
      h = jnp.concatenate([skips[i], h.astype(skips[i].dtype)], axis=-1)
    h = layers.conv_transpose(self.out_channels, (4, 4), 2, _UP, **self.kw)(nn.relu(h))
    return jnp.tanh(layers.at_least_float32(h))
