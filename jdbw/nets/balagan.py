"""BalaGAN's networks (orpatashnik/BalaGAN, after FUNIT), as flax.linen modules (NHWC).

- The translator is FUNIT's generator: a content encoder, a class encoder (the code of
  a reference image, averaged over K references), an MLP to AdaIN parameters and an
  AdaIN decoder: `jdbw.nets.munit.AdaINGenerator` (the same layout; its style encoder is
  the class encoder, its style size the class code's).
- `FUNITDiscriminator`: 7x7 conv(nf), then `n_stages` x [activation-first ResBlock(nf),
  activation-first ResBlock(2 nf, max `max_dim`), reflect pad + 3x3/2 average pool],
  two more ResBlocks, LeakyReLU 0.2 and no normalisation; two 1x1 heads on the shared
  features, one adversarial score map per class (the class's map is the critic's) and
  one classification logit map per class. Returns (adversarial [B, h, w, C],
  classification logits [B, C] averaged over positions, features [B, F] averaged).
- `ContrastiveEncoder`: stage 1's encoder, `jdbw.nets.dtn.Encoder`'s layout (no
  normalisation) giving the feature h that is clustered, and a 2-layer projection head
  to the NT-Xent embedding z (SimCLR).
"""

from __future__ import annotations

import functools

import flax.linen as nn
import jax.numpy as jnp

from jdbw.nets import dtn, layers
from jdbw.nets.blocks import ResBlock

_lrelu = functools.partial(nn.leaky_relu, negative_slope=0.2)


class FUNITDiscriminator(layers.ConvNet):
  classes: int = 2
  dim: int = 64
  n_stages: int = 2
  max_dim: int = 1024

  @nn.compact
  def __call__(self, x):
    kw = dict(sn=False, act=_lrelu, **self.kw)
    h = jnp.pad(x, ((0, 0), (3, 3), (3, 3), (0, 0)), mode="reflect")
    h = layers.Conv(self.dim, (7, 7), 1, "VALID", **self.kw)(h)
    d = self.dim
    for _ in range(self.n_stages):
      h = ResBlock(d, **kw)(h)
      d = min(2 * d, self.max_dim)
      h = ResBlock(d, **kw)(h)
      h = jnp.pad(h, ((0, 0), (1, 1), (1, 1), (0, 0)), mode="reflect")
      h = nn.avg_pool(h, (3, 3), (2, 2))
    h = ResBlock(d, **kw)(ResBlock(d, **kw)(h))
    feat = layers.at_least_float32(h)
    a = _lrelu(h)
    adv = layers.at_least_float32(layers.Conv(self.classes, (1, 1), 1, "VALID", **self.kw)(a))
    cls = layers.at_least_float32(layers.Conv(self.classes, (1, 1), 1, "VALID", **self.kw)(a))
    return adv, cls.mean(axis=(1, 2)), feat.mean(axis=(1, 2))


class ContrastiveEncoder(nn.Module):
  """(h [B, features], z [B, proj_dim]): the clustered feature and NT-Xent's embedding."""
  dim: int = 16
  features: int = 64
  proj_dim: int = 64

  def setup(self):
    self.encoder = dtn.Encoder(dim=self.dim, norm="none", features=self.features)
    self.head1 = nn.Dense(self.features)
    self.head2 = nn.Dense(self.proj_dim)

  def embed(self, x):
    return self.encoder(x)

  def __call__(self, x):
    h = self.encoder(x)
    return h, self.head2(nn.relu(self.head1(h)))
