"""Assertions shared by several test modules (imported as `helpers`: pytest puts tests/
on the path)."""


def one_line(excinfo, *needles):
  """The error of `pytest.raises` is one line and names every needle (flag, file, ...)."""
  msg = str(excinfo.value)
  assert "\n" not in msg
  for n in needles:
    assert n in msg, msg


# The suite compiles at LLVM -O0 (conftest.py says why).
SUITE_OPT_LEVEL = "--xla_backend_optimization_level=0"


def fake_devices(n: int) -> str:
  return f"--xla_force_host_platform_device_count={n}"


def xla_flags(devices=1):
  """XLA_FLAGS for a CLI subprocess: `devices` fake CPU devices, compiled as conftest.py
  compiles the suite (LLVM -O0)."""
  return SUITE_OPT_LEVEL + (f" {fake_devices(devices)}" if devices > 1 else "")

