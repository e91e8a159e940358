"""XLA:CPU settings chosen by measurement, given to XLA through `XLA_FLAGS` before JAX starts.

jaxlib 0.10's XLA:CPU hands each convolution to YNNPACK by default (its
`individual_convolution` fusion). On this project's networks that library ran the
weight gradients of stride-1 5x5 and 7x7 convolutions over batch-sized windows 10-25x
slower than XLA's own kernels (MUNIT's decoder: 410 ms of which 335 ms were three such
gradients, and one forward convolution, against 90 ms without it). Taking that one fusion
type out of the default list made the compiled iterations at batch 64 on the 2-core CPU
machine 1.1x (JD-BW, d = 5), 1.5x (CycleGAN, BalaGAN at the CPU study's widths) and 2.35x
(MUNIT) faster, with values moved by float reassociation only (docs/benchmarks.md, "YNNPACK's
convolutions on XLA:CPU").

`apply()` adds the flag to `XLA_FLAGS` in the process environment. It must run before
the first JAX computation (XLA reads the flags once, when the backend starts); the entry
points (`experiments/__init__.py`), the test suite's conftest and the notebook call it
first. A library user's own script calls `jdbw.xla_flags.apply()` before touching JAX.
Nothing is added where the user's `XLA_FLAGS` already sets the flag (theirs wins), or
where the installed jaxlib is not a version the flag was measured with: XLA stops the
process on a flag it does not know, and another version's defaults are not measured.
The flag concerns XLA:CPU alone; GPU and TPU programs are unaffected.
"""

from __future__ import annotations

import importlib.metadata
import os

YNN_FUSION_TYPE = "--xla_cpu_experimental_ynn_fusion_type"
CPU_FLAGS = (f"{YNN_FUSION_TYPE}=-individual_convolution",)
# jaxlib versions (prefixes) whose XLA:CPU knows these flags and was measured with them.
MEASURED_JAXLIB = ("0.10.",)


def _jaxlib_version() -> str | None:
  try:
    return importlib.metadata.version("jaxlib")
  except importlib.metadata.PackageNotFoundError:
    return None


def with_cpu_flags(flags: str, jaxlib_version: str | None = None) -> str:
  """`flags` (an `XLA_FLAGS` value) with each of CPU_FLAGS that it does not set already,
  when `jaxlib_version` (default: the installed one) is one of MEASURED_JAXLIB."""
  version = _jaxlib_version() if jaxlib_version is None else jaxlib_version
  if not version or not version.startswith(MEASURED_JAXLIB):
    return flags
  set_names = {f.split("=", 1)[0] for f in flags.split()}
  added = [f for f in CPU_FLAGS if f.split("=", 1)[0] not in set_names]
  return " ".join([flags.strip(), *added]).strip()


def apply(environ=None) -> str:
  """Adds CPU_FLAGS to `environ` (default: os.environ)'s XLA_FLAGS; returns the value."""
  environ = os.environ if environ is None else environ
  environ["XLA_FLAGS"] = with_cpu_flags(environ.get("XLA_FLAGS", ""))
  return environ["XLA_FLAGS"]
