"""Layers and blocks every network of the library is built from (flax.linen).

Variable collections: 'params', and `SPECTRAL` for spectral normalisation's
power-iteration state (u, sigma), which changes only when a call passes
`update_stats=True` with `mutable=[SPECTRAL]` (training steps do; evaluation does not).
`init` / `apply` are the pure functions every method calls. No batch statistics
anywhere: every block is per sample, so any batch size (or device split) gives the
same outputs.
"""

from __future__ import annotations

import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jdbw.nets import layers

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


_EPS = 1e-5


def instance_norm(x):
  """Per-sample, per-channel normalisation over H, W (no affine)."""
  # Statistics in float32 whatever the compute dtype.
  x32 = layers.at_least_float32(x)
  mean = x32.mean((1, 2), keepdims=True)
  var = x32.var((1, 2), keepdims=True)
  return ((x32 - mean) * jax.lax.rsqrt(var + _EPS)).astype(x.dtype)


def layer_norm(dtype=None) -> nn.LayerNorm:
  """MUNIT's decoder LayerNorm: per sample over (H, W, C), per-channel affine."""
  return nn.LayerNorm(epsilon=_EPS, reduction_axes=(1, 2, 3), feature_axes=-1, dtype=dtype)


def upsample2x(x):
  """2x nearest-neighbour up-sampling of NHWC maps (MUNIT's decoder)."""
  b, h, w, c = x.shape
  return jax.image.resize(x, (b, 2 * h, 2 * w, c), "nearest")


class ConvBlock(nn.Module):
  """MUNIT's Conv2dBlock: reflect pad, conv, norm ('none'|'in'|'ln'|'adain'), activation.

  With norm 'adain' the call takes `adain` = (bias, scale), each [B, features].
  """
  features: int
  kernel: int
  stride: int = 1
  pad: int = 0
  norm: str = "none"
  act: str = "relu"
  impl: str = "auto"   # layers.CONV_IMPLS
  dtype: Any = None    # compute dtype

  @nn.compact
  def __call__(self, x, adain=None):
    if self.pad:
      p = self.pad
      x = jnp.pad(x, ((0, 0), (p, p), (p, p), (0, 0)), mode="reflect")
    x = layers.Conv(self.features, (self.kernel, self.kernel), self.stride, "VALID",
                    self.impl, self.dtype)(x)
    if self.norm == "in":
      x = instance_norm(x)
    elif self.norm == "ln":
      x = layer_norm(self.dtype)(x)
    elif self.norm == "adain":
      bias, scale = (a.astype(x.dtype) for a in adain)
      x = instance_norm(x) * scale[:, None, None, :] + bias[:, None, None, :]
    elif self.norm != "none":
      raise ValueError(f"unknown norm {self.norm!r}")
    if self.act == "relu":
      x = nn.relu(x)
    elif self.act == "lrelu":
      x = nn.leaky_relu(x, 0.2)
    elif self.act == "tanh":
      x = jnp.tanh(x)
    return x


class ResBlock(nn.Module):
  """Two 3x3 convolutions and a skip, in one of two layouts.

  'preact' (the paper's generators and joint discriminator): activation -> conv ->
  `norm` (a per-sample function, or none), twice, spectrally normalised if `sn`; a 1x1
  conv on the skip when the width changes. 'munit' (MUNIT's ResBlock): ConvBlock(3x3,
  reflect pad, `norm` in 'none'|'in'|'ln'|'adain', ReLU) then the same without
  activation, identity skip; with 'adain', `adain` = ((bias, scale), (bias, scale)),
  one pair per conv. Both layouts are per sample.
  """
  features: int
  sn: bool = True
  act: Any = nn.relu
  impl: str = "auto"
  dtype: Any = None
  norm: Any = None
  layout: str = "preact"

  @nn.compact
  def __call__(self, x, update_stats: bool = False, adain=None):
    if self.layout == "munit":
      a1, a2 = (None, None) if adain is None else adain
      kw = dict(impl=self.impl, dtype=self.dtype)
      norm = self.norm or "none"
      h = ConvBlock(self.features, 3, 1, 1, norm, "relu", **kw)(x, a1)
      h = ConvBlock(self.features, 3, 1, 1, norm, "none", **kw)(h, a2)
      return x + h
    if self.layout != "preact":
      raise ValueError(f"unknown ResBlock layout {self.layout!r}")
    c = functools.partial(conv, sn=self.sn, impl=self.impl, dtype=self.dtype)
    norm = self.norm or (lambda h: h)
    h = norm(c(self.features, 3)(self.act(x), update_stats))
    h = norm(c(self.features, 3)(self.act(h), update_stats))
    skip = x
    if x.shape[-1] != self.features:
      skip = c(self.features, 1)(x, update_stats)
    return skip + h


def sample_noise(rng, batch: int, dim: int, dtype=jnp.float32) -> Array:
  """Generator noise z ~ U(-1, 1)^d (paper §4.2: uniform)."""
  return jax.random.uniform(rng, (batch, dim), dtype, -1.0, 1.0)


def with_tiled_noise(h: Array, z: Array) -> Array:
  """concat(h, z repeated over h's grid) on channels (§4.2: noise joins the features)."""
  z0 = jnp.broadcast_to(z[:, None, None, :].astype(h.dtype), h.shape[:3] + (z.shape[-1],))
  return jnp.concatenate([h, z0], -1)


def split_variables(variables: dict) -> tuple[dict, dict]:
  """(params, spectral-norm state) of a module's variables; {} where it has none."""
  return variables.get("params", {}), variables.get(SPECTRAL, {})


def init(module: nn.Module, rng, *inputs: Array) -> dict:
  """All variables of `module` ('params' and, with spectral norm, SPECTRAL)."""
  return module.init({"params": rng}, *inputs, update_stats=False)


def apply(module: nn.Module, variables: dict, *inputs: Array, update_stats: bool = False):
  """Runs `module`; with update_stats returns (out, new_variables) with fresh SN state."""
  if not update_stats:
    return module.apply(variables, *inputs, update_stats=False)
  out, mutated = module.apply(variables, *inputs, update_stats=True, mutable=[SPECTRAL])
  return out, {**variables, **mutated}

