"""Networks of the paper as flax.linen modules (pure `init`/`apply`).

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
import jax
import jax.numpy as jnp

from jdbw import layers

SPECTRAL = "spectral"

Array = Any


def _pad(kernel: int, stride: int):
  """PyTorch-style symmetric padding: 'same' for odd kernels, halving for 4x4/2."""
  if kernel == 1:
    return "VALID"
  p = (kernel - stride + 1) // 2 if stride > 1 else kernel // 2
  return ((p, p), (p, p))


class SNLayer(nn.Module):
  """A conv / transposed conv / dense layer, spectrally normalised if `sn`.

  The layer is built inside this module, so its params live at `<path>/layer/...`
  and its power-iteration state at `<path>/sn/layer/kernel/{u,sigma}`.
  """
  kind: str            # 'conv', 'conv_transpose' or 'dense'
  features: int
  kernel: int = 1
  stride: int = 1
  sn: bool = True
  impl: str = "auto"   # layers.CONV_IMPLS
  dtype: Any = None    # compute dtype; parameters stay float32

  @nn.compact
  def __call__(self, x, update_stats: bool):
    k, s = (self.kernel, self.kernel), (self.stride, self.stride)
    if self.kind == "conv":
      layer = layers.Conv(self.features, k, s, _pad(self.kernel, self.stride), self.impl,
                          self.dtype, name="layer")
    elif self.kind == "conv_transpose":
      # Padding k - 1 - p reproduces PyTorch's ConvTranspose2d(k, s, p): 16 -> 32.
      p = self.kernel - 1 - ((self.kernel - self.stride + 1) // 2) if self.stride > 1 else 0
      pad = "VALID" if self.kernel == 1 else ((p, p), (p, p))
      layer = layers.conv_transpose(self.features, k, s, pad, self.impl, self.dtype,
                                    name="layer")
    else:
      layer = layers.Dense(self.features, self.dtype, name="layer")
    if self.sn:
      return nn.SpectralNorm(layer, collection_name=SPECTRAL, name="sn")(
          x, update_stats=update_stats)
    return layer(x)


def conv(features, kernel, stride=1, sn=True, name=None, impl="auto", dtype=None):
  return SNLayer("conv", features, kernel, stride, sn, impl, dtype, name=name)


def conv_transpose(features, kernel, stride, sn=True, name=None, impl="auto", dtype=None):
  return SNLayer("conv_transpose", features, kernel, stride, sn, impl, dtype, name=name)


def dense(features, sn=True, name=None, dtype=None):
  return SNLayer("dense", features, sn=sn, dtype=dtype, name=name)


class ResBlock(nn.Module):
  """Two 3x3 convs and a skip (1x1 conv on the skip when the width changes)."""
  features: int
  sn: bool = True
  act: Any = nn.relu
  impl: str = "auto"
  dtype: Any = None

  @nn.compact
  def __call__(self, x, update_stats: bool):
    c = functools.partial(conv, sn=self.sn, impl=self.impl, dtype=self.dtype)
    h = c(self.features, 3)(self.act(x), update_stats)
    h = c(self.features, 3)(self.act(h), update_stats)
    skip = x
    if x.shape[-1] != self.features:
      skip = c(self.features, 1)(x, update_stats)
    return skip + h


def sample_noise(rng, batch: int, dim: int, dtype=jnp.float32) -> Array:
  """Generator noise z ~ U(-1, 1)^d (paper §4.2: uniform)."""
  return jax.random.uniform(rng, (batch, dim), dtype, -1.0, 1.0)


class Generator(nn.Module):
  """Table 2: G(x, z) at 32x32.

  x -> KxK conv(64)/s -> 2 ResBlock(64) -> 1x1 conv(64) = x0; z tiled over the
  (32/s)^2 grid = z0; concat(x0, z0) -> 1x1 conv(64) -> 2 ResBlock(64) ->
  KxK transposed conv(c)/s -> tanh. MNIST-SRMNIST: K=4, s=2, d=8; MNIST-SVHN:
  K=1, s=1, d=16.
  """
  out_channels: int = 1
  kernel: int = 4
  stride: int = 2
  features: int = 64
  spectral_norm: bool = True
  impl: str = "auto"   # layers.CONV_IMPLS
  dtype: Any = None    # compute dtype; output float32

  @nn.compact
  def __call__(self, x, z, update_stats: bool = False):
    sn, f = self.spectral_norm, self.features
    kw = dict(impl=self.impl, dtype=self.dtype)
    res = functools.partial(ResBlock, sn=sn, **kw)
    h = conv(f, self.kernel, self.stride, sn, **kw)(x, update_stats)
    h = res(f)(h, update_stats)
    h = res(f)(h, update_stats)
    h = conv(f, 1, sn=sn, **kw)(nn.relu(h), update_stats)
    z0 = jnp.broadcast_to(z[:, None, None, :].astype(h.dtype),
                          h.shape[:3] + (z.shape[-1],))
    h = conv(f, 1, sn=sn, **kw)(jnp.concatenate([h, z0], -1), update_stats)
    h = res(f)(h, update_stats)
    h = res(f)(h, update_stats)
    h = conv_transpose(self.out_channels, self.kernel, self.stride, sn, **kw)(
        nn.relu(h), update_stats)
    return jnp.tanh(layers.at_least_float32(h))


class JointDiscriminator(nn.Module):
  """Table 1: D(x, y) -> R with three streams per level (all convs 4x4, stride 2).

  Level l: x_l = conv(x_{l-1}), y_l = conv(y_{l-1}), xy_l = conv(h_{l-1}) with
  h_0 = concat(x, y), h_l = concat(x_l, xy_l, y_l). Level 2's concatenation passes
  through 2 ResBlock(128) (the first projects 256 -> 128 on its skip) before xy_3.
  Then conv(256) -> fc 1024 -> 256 -> 1 at 32x32. Intermediates are sown into
  'intermediates' for shape checks.
  """
  features: int = 32
  spectral_norm: bool = True
  impl: str = "auto"   # layers.CONV_IMPLS
  dtype: Any = None    # compute dtype; output float32

  @nn.compact
  def __call__(self, x, y, update_stats: bool = False):
    sn, f = self.spectral_norm, self.features
    kw = dict(impl=self.impl, dtype=self.dtype)
    act = functools.partial(nn.leaky_relu, negative_slope=0.2)
    hx, hy, h = x, y, jnp.concatenate([x, y], -1)
    for level, mult in enumerate((1, 2, 4), start=1):
      hx = act(conv(f * mult, 4, 2, sn, name=f"x{level}", **kw)(hx, update_stats))
      hy = act(conv(f * mult, 4, 2, sn, name=f"y{level}", **kw)(hy, update_stats))
      hxy = act(conv(2 * f * mult, 4, 2, sn, name=f"xy{level}", **kw)(h, update_stats))
      h = jnp.concatenate([hx, hxy, hy], -1)
      self.sow("intermediates", f"concat{level}", h)
      if level == 2:
        h = ResBlock(4 * f, sn, act, **kw)(h, update_stats)
        h = ResBlock(4 * f, sn, act, **kw)(h, update_stats)
        self.sow("intermediates", "res2", h)
    h = act(conv(8 * f, 4, 2, sn, name="out_conv", **kw)(h, update_stats))
    h = h.reshape(h.shape[0], -1)
    self.sow("intermediates", "fc_in", h)
    h = act(dense(8 * f, sn, name="fc1", dtype=self.dtype)(h, update_stats))
    return layers.at_least_float32(dense(1, sn, name="fc2", dtype=self.dtype)(h, update_stats)[:, 0])


class DCGANCritic(nn.Module):
  """DCGAN discriminator body: four 4x4 stride-2 convs (64, 128, 256, 512), linear -> R.

  Used for the weight networks W_x, W_y (paper §4.3; no spectral norm by default) and
  as the marginal discriminator (one-sided batch weight, baselines; spectral norm on).
  Called with several images it concatenates them on channels (the 'concat' scheme's
  W(x, y)).
  """
  features: int = 64
  spectral_norm: bool = False
  num_layers: int = 4
  impl: str = "auto"   # layers.CONV_IMPLS
  dtype: Any = None    # compute dtype; output float32

  @nn.compact
  def __call__(self, *images, update_stats: bool = False):
    h = jnp.concatenate(images, -1) if len(images) > 1 else images[0]
    for i in range(self.num_layers):
      h = conv(self.features * 2 ** i, 4, 2, self.spectral_norm, impl=self.impl,
               dtype=self.dtype)(h, update_stats)
      h = nn.leaky_relu(h, 0.2)
    h = h.reshape(h.shape[0], -1)
    return layers.at_least_float32(
        dense(1, self.spectral_norm, dtype=self.dtype)(h, update_stats)[:, 0])


# Paper configurations (Table 2 caption) and tiny variants for tests.
GeneratorMNIST = functools.partial(Generator, kernel=4, stride=2)      # d = 8
GeneratorSVHN = functools.partial(Generator, kernel=1, stride=1)       # d = 16, c = 3
WeightNet = functools.partial(DCGANCritic, spectral_norm=False)
MarginalDiscriminator = functools.partial(DCGANCritic, spectral_norm=True)
TinyGenerator = functools.partial(Generator, features=8)
TinyJointDiscriminator = functools.partial(JointDiscriminator, features=4)
TinyCritic = functools.partial(DCGANCritic, features=4)


def init(module: nn.Module, rng, *inputs: Array) -> dict:
  """All variables of `module` ('params' and, with spectral norm, SPECTRAL)."""
  return module.init({"params": rng}, *inputs, update_stats=False)


def apply(module: nn.Module, variables: dict, *inputs: Array, update_stats: bool = False):
  """Runs `module`; with update_stats returns (out, new_variables) with fresh SN state."""
  if not update_stats:
    return module.apply(variables, *inputs, update_stats=False)
  out, mutated = module.apply(variables, *inputs, update_stats=True, mutable=[SPECTRAL])
  return out, {**variables, **mutated}

