"""The XLA:CPU flags of jdbw.xla_flags: composed, guarded, and in effect in this process."""

import os
import subprocess
import sys

import jax
import numpy as np
import pytest

from jdbw import xla_flags

FLAG = xla_flags.CPU_FLAGS[0]


def test_added_to_the_users_flags():
  got = xla_flags.with_cpu_flags("--xla_force_host_platform_device_count=2", "0.10.2")
  assert got.split() == ["--xla_force_host_platform_device_count=2", FLAG]
  assert xla_flags.with_cpu_flags("", "0.10.2") == FLAG
  # once only
  assert xla_flags.with_cpu_flags(got, "0.10.2") == got


def test_the_users_own_setting_wins():
  mine = f"{xla_flags.YNN_FUSION_TYPE}=individual_dot --xla_backend_optimization_level=0"
  assert xla_flags.with_cpu_flags(mine, "0.10.2") == mine


@pytest.mark.parametrize("version", ["0.9.1", "0.11.0", "", "1.10.0"])
def test_nothing_added_for_an_unmeasured_jaxlib(version):
  # XLA ends the process on a flag it does not know: other versions get nothing.
  assert xla_flags.with_cpu_flags("--a=1", version) == "--a=1"


def test_apply_writes_the_environment():
  env = {"XLA_FLAGS": "--a=1"}
  xla_flags.apply(env)
  if jax.lib.__version__.startswith(xla_flags.MEASURED_JAXLIB):
    assert env["XLA_FLAGS"].split() == ["--a=1", FLAG]
  else:
    assert env["XLA_FLAGS"] == "--a=1"


def ynn_convolutions(hlo: str) -> int:
  """How many YNNPACK fusions in optimised HLO text wrap a convolution."""
  with_conv, name = set(), None
  for line in hlo.splitlines():
    if not line.startswith((" ", "}")) and "{" in line:
      name = line.split()[0].lstrip("%")   # a computation's header
    elif " convolution(" in line and name:
      with_conv.add(name)
  return sum(1 for line in hlo.splitlines() if '"__ynn_fusion"' in line
             and any(f"calls=%{c}," in line or f"calls=%{c} " in line for c in with_conv))


_CONV_GRAD = """
import jax, jax.numpy as jnp, numpy as np
rng = np.random.default_rng(0)
x = rng.normal(size=(32, 16, 16, 16)).astype(np.float32)   # YNNPACK takes it at this size
k = rng.normal(size=(5, 5, 16, 8)).astype(np.float32)
def loss(k, x):
  y = jax.lax.conv_general_dilated(x, k, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))
  return jnp.sum(y * y) / 2
grad = jax.jit(jax.grad(loss))
"""


@pytest.mark.skipif(jax.default_backend() != "cpu"
                    or not jax.lib.__version__.startswith(xla_flags.MEASURED_JAXLIB),
                    reason="an XLA:CPU flag of the measured jaxlib")
def test_in_effect_in_the_suite():
  """conftest applied the flags before JAX started: the weight gradient of a 5x5 stride-1
  convolution (as in MUNIT's decoder, batch-sized window) compiles without YNNPACK's convolution fusion,
  which a process without the flag does use, and its value agrees with numpy."""
  assert FLAG in os.environ["XLA_FLAGS"].split()
  scope = {}
  exec(_CONV_GRAD, scope)
  grad, k, x = scope["grad"], scope["k"], scope["x"]
  assert ynn_convolutions(grad.lower(k, x).compile().as_text()) == 0
  # The same program in a process without the flag: YNNPACK takes its convolutions.
  env = {**os.environ, "XLA_FLAGS": os.environ["XLA_FLAGS"].replace(FLAG, "")}
  out = subprocess.run([sys.executable, "-c", _CONV_GRAD + "print(grad.lower(k, x).compile()"
                        ".as_text())"], env=env, capture_output=True, text=True, check=True)
  assert ynn_convolutions(out.stdout) > 0
  # numpy: dL/dk[a, b, i, o] = sum_{n,h,w} xpad[n, h + a, w + b, i] * y[n, h, w, o]
  xp = np.pad(x.astype(np.float64), ((0, 0), (2, 2), (2, 2), (0, 0)))
  win = np.lib.stride_tricks.sliding_window_view(xp, (5, 5), axis=(1, 2))  # n h w i a b
  y = np.einsum("nhwiab,abio->nhwo", win, k)
  want = np.einsum("nhwiab,nhwo->abio", win, y)
  np.testing.assert_allclose(grad(k, x), want, rtol=1e-4, atol=1e-5 * np.abs(want).max())
