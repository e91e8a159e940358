"""The methods and their one registry: name -> (method class, config class).

  from jdbw import methods
  method = methods.build("jd", batch_weight="two_sided", d_steps=5)
  method = methods.from_config(some_jd_config)

Every entry point (trainer, inference, evaluation, benchmarks) reads `REGISTRY`; an
unknown name is refused with one line listing the valid ones. A new method is one
module here with a class following `base.Method` and one line below (docs/methods.md).
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

from jdbw.errors import ConfigError
from jdbw.methods import (balagan, base, bicyclegan, cyclegan, distancegan, dtn, irwgan, jd,
                          munit, pix2pix, xgan)
from jdbw.methods.base import Method, TrainState


class Entry(NamedTuple):
  method: type
  config: type
  summary: str


REGISTRY: dict[str, Entry] = {
    "jd": Entry(jd.JD, jd.JDConfig,
                "joint discriminator: JD-BW (--batch_weight=two_sided, Algorithm 1), JD alone"
                " (none), one-sided batch weight (one_sided, Algorithm 2)"),
    "munit": Entry(munit.MUNIT, munit.MUNITConfig,
                   "MUNIT (--batch_weight=none) or MUNIT + batch weight (two_sided)"),
    "cyclegan": Entry(cyclegan.CycleGAN, cyclegan.CycleGANConfig,
                      "CycleGAN (--batch_weight=none) or CycleGAN + batch weight (two_sided)"),
    "distancegan": Entry(distancegan.DistanceGAN, distancegan.DistanceGANConfig,
                         "DistanceGAN: --distance=pairwise|self|both, --cycle_weight,"
                         " --one_sided; + batch weight (two_sided, one_sided)"),
    "pix2pix": Entry(pix2pix.Pix2Pix, pix2pix.Pix2PixConfig,
                     "pix2pix: paired translation (needs --pairing=same_draw), U-Net with"
                     " dropout, conditional PatchGAN, L1; --reverse also trains Y -> X"),
    "bicyclegan": Entry(bicyclegan.BiCycleGAN, bicyclegan.BiCycleGANConfig,
                        "BiCycleGAN: multimodal paired translation (needs --pairing=same_draw),"
                        " cVAE-GAN + cLR-GAN with an encoder E; --reverse also trains Y -> X"),
    "dtn": Entry(dtn.DTN, dtn.DTNConfig,
                 "DTN: G = g(f(x)) with f fixed, fitted first (--dtn_f=classifier on X's"
                 " training labels, or autoencoder), ternary D; + batch weight (one_sided)"),
    "xgan": Entry(xgan.XGAN, xgan.XGANConfig,
                  "XGAN: shared embedding, embedding adversary, semantic consistency, GAN,"
                  " optional teacher (DTN's f); + batch weight (two_sided)"),
    "irwgan": Entry(irwgan.IrwGAN, irwgan.IrwGANConfig,
                    "IrwGAN: CycleGAN with learned per-image weights β (softmax over the"
                    " batch, thresholded, norm penalty) on all of an image's losses"),
    "balagan": Entry(balagan.BalaGAN, balagan.BalaGANConfig,
                     "BalaGAN: X's modalities by contrastive encoder + spherical k-means"
                     " (--clusters), one FUNIT-like translator over the k + 1 classes"),
}
# Names saved in config.json by earlier versions (the class name).
_SAVED_NAMES = {"JD": "jd", "MUNIT": "munit", "CycleGAN": "cyclegan", "DistanceGAN": "distancegan"}


def names() -> list[str]:
  return list(REGISTRY)


def canonical_name(name: str | None) -> str | None:
  """The registry name of a name saved in config.json (older records: the class name)."""
  return _SAVED_NAMES.get(name, name)


def get(name: str) -> Entry:
  """The registry entry of `name` (a `--model` value or a saved config's method)."""
  key = _SAVED_NAMES.get(name, name)
  if key not in REGISTRY:
    raise ConfigError(f"--model: got {name!r}; expected one of {names()}")
  return REGISTRY[key]


def build(name: str, **config) -> Method:
  """A method of registry `name` with config fields `config` (others default)."""
  entry = get(name)
  fields = {f.name for f in dataclasses.fields(entry.config)}
  unknown = sorted(set(config) - fields)
  if unknown:
    raise ConfigError(f"{name}: unknown config field(s) {unknown}")
  return entry.method(entry.config(**config))


def from_config(config) -> Method:
  """The method whose config class `config` is an instance of."""
  # Exact types first: DistanceGAN's config and method derive from CycleGAN's.
  for match in (lambda a, cls: type(a) is cls, isinstance):
    for entry in REGISTRY.values():
      if match(config, entry.config):
        return entry.method(config)
  raise ConfigError(f"no registered method takes a {type(config).__name__}"
                    f" (registered: {names()})")


def name_of(method) -> str:
  """Registry name of a method instance (what config.json records)."""
  for match in (lambda a, cls: type(a) is cls, isinstance):
    for key, entry in REGISTRY.items():
      if match(method, entry.method):
        return key
  raise ConfigError(f"{type(method).__name__} is not a registered method ({names()})")


__all__ = ["REGISTRY", "Entry", "Method", "TrainState", "balagan", "base", "build", "canonical_name",
           "cyclegan", "distancegan", "dtn", "from_config", "get", "irwgan", "jd", "munit", "name_of", "names",
           "xgan"]
