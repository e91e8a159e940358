"""The paper's networks (Appendix B) and their small CPU variants, flax.linen.

Variable collections: 'params', and `SPECTRAL` for spectral normalisation's
power-iteration state (u, sigma), which changes only when a call passes
`update_stats=True` with `mutable=[SPECTRAL]` (training steps do; evaluation does not).

The tables give layer shapes but not activations or padding. We follow MUNIT for
generators (ReLU, residual blocks without normalisation since spectral norm replaces
it) and DCGAN for discriminators and weight nets (LeakyReLU 0.2); 4x4 stride-2 convs
pad by 1 on each side (32 -> 16), as in PyTorch. No batch statistics anywhere, so
every network is per-sample and any batch size (or device split) gives the same
outputs.
"""

from __future__ import annotations

import functools
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from jdbw.nets import layers
from jdbw.nets.blocks import (ResBlock, conv, conv_transpose, dense, instance_norm, layer_norm,
                              upsample2x, with_tiled_noise)

Array = Any


class _NoiseGenerator(layers.ConvNet):
  """The paper's stochastic generators G(x, z): `features` wide, spectral norm on every
  layer (replacing normalisation), `out_channels` of the target domain."""
  out_channels: int = 1
  features: int = 64
  spectral_norm: bool = True

  def layer_fns(self):
    """This generator's conv and ResBlock constructors (its spectral norm, impl, dtype)."""
    return (functools.partial(conv, sn=self.spectral_norm, **self.kw),
            functools.partial(ResBlock, sn=self.spectral_norm, **self.kw))


class Generator(_NoiseGenerator):
  """Table 2: G(x, z) at 32x32.

  x -> KxK conv(64)/s -> 2 ResBlock(64) -> 1x1 conv(64) = x0; z tiled over the
  (32/s)^2 grid = z0; concat(x0, z0) -> 1x1 conv(64) -> 2 ResBlock(64) ->
  KxK transposed conv(c)/s -> tanh. MNIST-SRMNIST: K=4, s=2, d=8; MNIST-SVHN:
  K=1, s=1, d=16.
  """
  kernel: int = 4
  stride: int = 2

  @nn.compact
  def __call__(self, x, z, update_stats: bool = False):
    (c, res), f = self.layer_fns(), self.features
    h = c(f, self.kernel, self.stride)(x, update_stats)
    h = res(f)(h, update_stats)
    h = res(f)(h, update_stats)
    h = c(f, 1)(nn.relu(h), update_stats)
    h = c(f, 1)(with_tiled_noise(h, z), update_stats)
    h = res(f)(h, update_stats)
    h = res(f)(h, update_stats)
    h = conv_transpose(self.out_channels, self.kernel, self.stride, self.spectral_norm,
                       **self.kw)(nn.relu(h), update_stats)
    return jnp.tanh(layers.at_least_float32(h))


class GeneratorHiRes(_NoiseGenerator):
  """128x128 generator (§4.2): MUNIT's generator without AdaIN, with spectral norm.

  MUNIT's content encoder: 7x7 conv(f), n_down x 4x4/2 conv(2x), instance norm,
  ReLU; then the noise z tiled over the grid is concatenated "before the first
  residual block" and a 1x1 conv(d) mixes it in (as in Table 2); the encoder's n_res
  ResBlocks (instance norm), the decoder's n_res ResBlocks with AdaIN removed (no
  norm), n_down x (2x nearest upsample, 5x5 conv(d/2), layer norm, ReLU), 7x7
  conv(c), tanh. Defaults are MUNIT's (f = 64, n_down = 2, n_res = 4). We pad with
  zeros where MUNIT pads by reflection (one padding rule for every network here).
  """
  out_channels: int = 3
  n_down: int = 2
  n_res: int = 4

  @nn.compact
  def __call__(self, x, z, update_stats: bool = False):
    (c, res), d = self.layer_fns(), self.features
    h = nn.relu(instance_norm(c(d, 7)(x, update_stats)))
    for _ in range(self.n_down):
      d *= 2
      h = nn.relu(instance_norm(c(d, 4, 2)(h, update_stats)))
    h = c(d, 1)(with_tiled_noise(h, z), update_stats)
    for _ in range(self.n_res):
      h = res(d, norm=instance_norm)(h, update_stats)
    for _ in range(self.n_res):
      h = res(d)(h, update_stats)
    for _ in range(self.n_down):
      d //= 2
      h = nn.relu(layer_norm(self.dtype)(c(d, 5)(upsample2x(h), update_stats)))
    h = c(self.out_channels, 7)(h, update_stats)
    return jnp.tanh(layers.at_least_float32(h))


class JointDiscriminator(layers.ConvNet):
  """Table 1: D(x, y) -> R with three streams per level (all convs 4x4, stride 2).

  Level l: x_l = conv(x_{l-1}), y_l = conv(y_{l-1}), xy_l = conv(h_{l-1}) with
  h_0 = concat(x, y), h_l = concat(x_l, xy_l, y_l); widths f·m, 2f·m, f·m for the
  level's multiplier m. Level `res_level`'s concatenation passes through 2
  ResBlock(2f·m) (the first projects on its skip). Then conv(8f) -> fc -> 8f -> 1.
  Table 1 at 32x32: levels (1, 2, 4), ResBlocks after level 2 (8x8), fc 1024 -> 256.
  The paper gives no 128x128 critic; `JointDiscriminator128` adds two levels so that
  the ResBlocks again run at 8x8 and the fc again reads 2x2x8f. Intermediates are
  sown into 'intermediates' for shape checks.
  """
  features: int = 32
  spectral_norm: bool = True
  levels: tuple = (1, 2, 4)
  res_level: int = 2

  @nn.compact
  def __call__(self, x, y, update_stats: bool = False):
    sn, f = self.spectral_norm, self.features
    act = functools.partial(nn.leaky_relu, negative_slope=0.2)
    hx, hy, h = x, y, jnp.concatenate([x, y], -1)
    for level, mult in enumerate(self.levels, start=1):
      hx = act(conv(f * mult, 4, 2, sn, name=f"x{level}", **self.kw)(hx, update_stats))
      hy = act(conv(f * mult, 4, 2, sn, name=f"y{level}", **self.kw)(hy, update_stats))
      hxy = act(conv(2 * f * mult, 4, 2, sn, name=f"xy{level}", **self.kw)(h, update_stats))
      h = jnp.concatenate([hx, hxy, hy], -1)
      self.sow("intermediates", f"concat{level}", h)
      if level == self.res_level:
        h = ResBlock(2 * f * mult, sn, act, **self.kw)(h, update_stats)
        h = ResBlock(2 * f * mult, sn, act, **self.kw)(h, update_stats)
        self.sow("intermediates", f"res{level}", h)
    h = act(conv(8 * f, 4, 2, sn, name="out_conv", **self.kw)(h, update_stats))
    h = h.reshape(h.shape[0], -1)
    self.sow("intermediates", "fc_in", h)
    h = act(dense(8 * f, sn, name="fc1", dtype=self.dtype)(h, update_stats))
    return layers.at_least_float32(dense(1, sn, name="fc2", dtype=self.dtype)(h, update_stats)[:, 0])


class DCGANCritic(layers.ConvNet):
  """DCGAN discriminator body: four 4x4 stride-2 convs (64, 128, 256, 512), linear -> R.

  Used for the weight networks W_x, W_y (paper §4.3; no spectral norm by default) and
  as the marginal discriminator (one-sided batch weight, baselines; spectral norm on).
  Called with several images it concatenates them on channels (the 'concat' scheme's
  W(x, y)).
  """
  features: int = 64
  spectral_norm: bool = False
  num_layers: int = 4
  max_features: int | None = None   # cap on the doubling widths (deeper 128x128 nets)

  @nn.compact
  def __call__(self, *images, update_stats: bool = False):
    h = jnp.concatenate(images, -1) if len(images) > 1 else images[0]
    for i in range(self.num_layers):
      width = self.features * 2 ** i
      if self.max_features:
        width = min(width, self.max_features)
      h = conv(width, 4, 2, self.spectral_norm, **self.kw)(h, update_stats)
      h = nn.leaky_relu(h, 0.2)
    h = h.reshape(h.shape[0], -1)
    return layers.at_least_float32(
        dense(1, self.spectral_norm, dtype=self.dtype)(h, update_stats)[:, 0])


class MLPGenerator(nn.Module):
  """Vector generator for the 2-D mixture: G(x, z) = x + f(concat(x, z)).

  f is an MLP of `num_layers` hidden layers of `features` units (ReLU) whose output
  layer starts at zero, so G starts as the identity (which already keeps ~99% of the
  bench's modes) and has to *learn* to break mode consistency: the failure batch weight
  exists for. No spectral norm: it would bound f's Lipschitz constant by 1 and forbid
  the mode-jumping maps the bench must be able to show (the image generators keep it,
  as the paper).
  """
  features: int = 64
  num_layers: int = 3

  @nn.compact
  def __call__(self, x, z, update_stats: bool = False):
    del update_stats  # No spectral norm here.
    h = jnp.concatenate([x, z.astype(x.dtype)], -1)
    for i in range(self.num_layers):
      h = nn.relu(nn.Dense(self.features, name=f"hidden{i}")(h))
    return x + nn.Dense(x.shape[-1], kernel_init=nn.initializers.zeros, name="out")(h)


class MLPCritic(nn.Module):
  """Vector critic -> R: an MLP (LeakyReLU 0.2), inputs concatenated on features.

  The 2-D counterpart of `JointDiscriminator` (called with (x, y)), of the marginal
  discriminator (y) and of the weight nets (x, or (x, y) for the concat scheme).
  """
  features: int = 64
  num_layers: int = 3
  spectral_norm: bool = True

  @nn.compact
  def __call__(self, *inputs, update_stats: bool = False):
    h = jnp.concatenate(inputs, -1) if len(inputs) > 1 else inputs[0]
    for _ in range(self.num_layers):
      h = nn.leaky_relu(dense(self.features, self.spectral_norm)(h, update_stats), 0.2)
    return layers.at_least_float32(dense(1, self.spectral_norm)(h, update_stats)[:, 0])


class AffineMap(nn.Module):
  """A fixed map G(x, z) = M x + c with no parameters: the 2-D bench's oracle generator.

  `matrix` and `offset` are tuples (row-major M, c); the noise is ignored.
  """
  matrix: tuple
  offset: tuple

  def __call__(self, x, z, update_stats: bool = False):
    del z, update_stats
    m = jnp.asarray(self.matrix, x.dtype).reshape(x.shape[-1], x.shape[-1])
    return x @ m.T + jnp.asarray(self.offset, x.dtype)


MLPWeightNet = functools.partial(MLPCritic, spectral_norm=False)
MLPJointDiscriminator = functools.partial(MLPCritic, spectral_norm=True)


# Paper configurations (Table 2 caption) and tiny variants for tests.
GeneratorMNIST = functools.partial(Generator, kernel=4, stride=2)      # d = 8
GeneratorSVHN = functools.partial(Generator, kernel=1, stride=1)       # d = 16, c = 3
WeightNet = functools.partial(DCGANCritic, spectral_norm=False)
MarginalDiscriminator = functools.partial(DCGANCritic, spectral_norm=True)
# 128x128 (§4.4: batch 6, d = 2); the paper names only the generator, see the critics'
# docstrings. The DCGAN critics deepened to reach 2x2, widths capped at 512.
JointDiscriminator128 = functools.partial(JointDiscriminator, levels=(1, 2, 4, 8, 8), res_level=4)
WeightNet128 = functools.partial(WeightNet, num_layers=6, max_features=512)
MarginalDiscriminator128 = functools.partial(MarginalDiscriminator, num_layers=6, max_features=512)
TinyGenerator = functools.partial(Generator, features=8)
TinyGeneratorHiRes = functools.partial(GeneratorHiRes, features=4, n_res=1)
TinyJointDiscriminator = functools.partial(JointDiscriminator, features=4)
TinyCritic = functools.partial(DCGANCritic, features=4)
