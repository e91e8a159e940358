"""Convolutions whose implementation is a choice: XLA's convolution or im2col + matmul.

On XLA:CPU the strided convolutions' backward and double backward (the gradient
penalty) ran 3-7x slower than the same layers written as slices + one matmul,
which XLA hands to its GEMM; 1x1 convolutions ran 1.6x faster as a plain matmul. For
3x3 stride-1 and transposed convolutions XLA's own kernels won (im2col 0.56-0.9x and
0.05-0.2x). 'auto' follows those measurements (docs/benchmarks.md) layer by layer on
CPU and keeps the native convolution on GPU/TPU. Both forms compute the same function
with the same parameters ('kernel' HWIO, 'bias'), laid out exactly as
flax.linen.Conv / ConvTranspose, so checkpoints move between them.

`impl`: 'auto', 'xla' or 'im2col'. `dtype`: compute dtype (None: the promoted type of
inputs and parameters, as flax); parameters stay float32 and are cast per call.
"""

from __future__ import annotations

from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

CONV_IMPLS = ("auto", "xla", "im2col")
COMPUTE_DTYPES = ("float32", "bfloat16")

Array = Any


def resolve_impl(impl: str, kernel=(3, 3), strides=(1, 1), transpose: bool = False) -> str:
  """The kernels one layer uses: 'auto' picks per layer on CPU, 'xla' elsewhere."""
  if impl not in CONV_IMPLS:
    raise ValueError(f"conv impl {impl!r}; expected one of {CONV_IMPLS}")
  if impl != "auto":
    return impl
  if jax.default_backend() != "cpu" or transpose:
    return "xla"
  return "im2col" if max(strides) > 1 or tuple(kernel) == (1, 1) else "xla"


def compute_dtype(name: str):
  """Config name -> layer dtype (None: the promoted type of inputs and parameters)."""
  if name not in COMPUTE_DTYPES:
    raise ValueError(f"compute dtype {name!r}; expected one of {COMPUTE_DTYPES}")
  return None if name == "float32" else jnp.dtype(name)


def at_least_float32(x: Array) -> Array:
  """bf16 network outputs back to float32 for the losses; float64 (tests) stays."""
  return x.astype(jnp.promote_types(x.dtype, jnp.float32))


def _explicit_pads(padding, in_hw: Sequence[int], kernel: Sequence[int],
                   strides: Sequence[int]):
  """flax-style padding ('SAME', 'VALID', int, or pairs) as ((lo, hi), (lo, hi))."""
  if isinstance(padding, str):
    return tuple(jax.lax.padtype_to_pads(tuple(in_hw), tuple(kernel), tuple(strides), padding))
  if isinstance(padding, int):
    return ((padding, padding),) * 2
  return tuple((p, p) if isinstance(p, int) else tuple(p) for p in padding)


def im2col_conv(x: Array, kernel: Array, strides=(1, 1), pads=((0, 0), (0, 0)),
                lhs_dilation=(1, 1)) -> Array:
  """NHWC x HWIO convolution as strided slices + one matmul (lax semantics, no flip).

  Equals `lax.conv_general_dilated(x, kernel, strides, pads, lhs_dilation)`:
  lhs_dilation > 1 (transposed convolution) inserts zeros between input pixels first.
  """
  kh, kw, cin, cout = kernel.shape
  (p0, p1), (q0, q1) = pads
  dh, dw = lhs_dilation
  # lax.pad handles edge and interior (dilation) padding in one op, negative edges too.
  x = jax.lax.pad(x, jnp.zeros((), x.dtype),
                  ((0, 0, 0), (p0, p1, dh - 1), (q0, q1, dw - 1), (0, 0, 0)))
  sh, sw = strides
  if (sh > 1 or sw > 1) and not (kh % sh or kw % sw or x.shape[1] % sh or x.shape[2] % sw):
    # Space-to-depth: a k x k stride-s convolution is a (k/s) x (k/s) stride-1 one on
    # s x s pixel blocks; unit-stride slices are cheaper than strided ones, forward
    # and in both backward passes (1-2x faster than strided slices on XLA:CPU).
    b_, h, w, c = x.shape
    x = x.reshape(b_, h // sh, sh, w // sw, sw, c).transpose(0, 1, 3, 2, 4, 5)
    x = x.reshape(b_, h // sh, w // sw, sh * sw * c)
    kernel = kernel.reshape(kh // sh, sh, kw // sw, sw, cin, cout).transpose(0, 2, 1, 3, 4, 5)
    kernel = kernel.reshape(kh // sh, kw // sw, sh * sw * cin, cout)
    kh, kw, cin, sh, sw = kh // sh, kw // sw, sh * sw * cin, 1, 1
  ho, wo = (x.shape[1] - kh) // sh + 1, (x.shape[2] - kw) // sw + 1
  if (kh, kw) == (1, 1):
    cols = x[:, : sh * (ho - 1) + 1 : sh, : sw * (wo - 1) + 1 : sw, :]
  else:
    # Patch order (i, j, c) matches kernel.reshape(kh * kw * cin, cout).
    cols = jnp.concatenate(
        [x[:, i : i + sh * (ho - 1) + 1 : sh, j : j + sw * (wo - 1) + 1 : sw, :]
         for i in range(kh) for j in range(kw)], axis=-1)
  return _dot(cols, kernel.reshape(kh * kw * cin, cout))


def _dot(a: Array, b: Array) -> Array:
  """a @ b, accumulated in float32 at least, in a's dtype.

  Accelerators accumulate bf16 products in float32 anyway. XLA:CPU hands a bf16
  matmul to its fast (YNNPACK) kernel only with a float32 result: 565-870 GFLOP/s
  against 150-310 with a bf16 one on this project's AVX512-BF16 CPU
  (docs/benchmarks.md), though the whole bf16 iteration gained only 3 %.
  """
  out = jnp.dot(a, b, preferred_element_type=jnp.promote_types(a.dtype, jnp.float32))
  return out.astype(a.dtype)


class Conv(nn.Module):
  """2-D convolution, NHWC, parameters as flax.linen.Conv."""
  features: int
  kernel_size: tuple[int, int]
  strides: tuple[int, int] | int = 1
  padding: Any = "SAME"
  impl: str = "auto"
  dtype: Any = None
  transpose: bool = False   # True: flax.linen.ConvTranspose semantics (lhs dilation).
  use_bias: bool = True

  @nn.compact
  def __call__(self, x: Array) -> Array:
    kernel_size = tuple(self.kernel_size)
    strides = (self.strides,) * 2 if isinstance(self.strides, int) else tuple(self.strides)
    kernel = self.param("kernel", nn.initializers.lecun_normal(),
                        kernel_size + (x.shape[-1], self.features), jnp.float32)
    bias = (self.param("bias", nn.initializers.zeros, (self.features,), jnp.float32)
            if self.use_bias else jnp.zeros((), jnp.float32))
    # As flax: without a dtype, compute in the promoted type of inputs and parameters.
    dtype = self.dtype or jnp.result_type(x, kernel)
    x, kernel, bias = x.astype(dtype), kernel.astype(dtype), bias.astype(dtype)
    if self.transpose:
      # lax.conv_transpose: stride-1 convolution of the stride-dilated input.
      conv_strides, dilation = (1, 1), strides
      if isinstance(self.padding, str):
        pads = [_transpose_pads(k, s, self.padding) for k, s in zip(kernel_size, strides)]
      else:
        pads = _explicit_pads(self.padding, x.shape[1:3], kernel_size, strides)
    else:
      conv_strides, dilation = strides, (1, 1)
      pads = _explicit_pads(self.padding, x.shape[1:3], kernel_size, strides)
    pads = tuple(tuple(p) for p in pads)
    if resolve_impl(self.impl, kernel_size, strides, self.transpose) == "im2col":
      y = im2col_conv(x, kernel, conv_strides, pads, dilation)
    else:
      y = jax.lax.conv_general_dilated(
          x, kernel, conv_strides, pads, lhs_dilation=dilation,
          dimension_numbers=("NHWC", "HWIO", "NHWC"))
    return y + bias


def _transpose_pads(k: int, s: int, padding: str):
  """lax.conv_transpose's padding of the dilated input for 'SAME' / 'VALID'."""
  if padding == "SAME":
    pad_len = k + s - 2
    lo = k - 1 if s > k - 1 else -(-pad_len // 2)
  elif padding == "VALID":
    pad_len, lo = k + s - 2 + max(k - s, 0), k - 1
  else:
    raise ValueError(f"transposed conv padding {padding!r}; expected SAME, VALID or pairs")
  return lo, pad_len - lo


def conv_transpose(features, kernel_size, strides, padding, impl="auto", dtype=None, name=None,
                   use_bias=True):
  """flax.linen.ConvTranspose equivalent (same parameters and output)."""
  return Conv(features, kernel_size, strides, padding, impl, dtype, transpose=True,
              use_bias=use_bias, name=name)


class Dense(nn.Module):
  """flax.linen.Dense with a compute dtype (parameters stay float32)."""
  features: int
  dtype: Any = None

  @nn.compact
  def __call__(self, x: Array) -> Array:
    kernel = self.param("kernel", nn.initializers.lecun_normal(),
                        (x.shape[-1], self.features), jnp.float32)
    bias = self.param("bias", nn.initializers.zeros, (self.features,), jnp.float32)
    dtype = self.dtype or jnp.result_type(x, kernel)
    return _dot(x.astype(dtype), kernel.astype(dtype)) + bias.astype(dtype)


class ConvNet(nn.Module, kw_only=True):
  """Base of the convolutional networks: how their layers run, never what they compute.

  `impl` (CONV_IMPLS) picks the convolution kernels, `dtype` the compute dtype (None: the
  promoted type of inputs and parameters); parameters and network outputs stay float32.
  Keyword-only, so a subclass's own fields keep their positions.
  """
  impl: str = "auto"
  dtype: Any = None

  @property
  def kw(self) -> dict:
    """The layer keywords that carry these settings (`Conv`, `ConvBlock`, `ResBlock`...)."""
    return dict(impl=self.impl, dtype=self.dtype)
