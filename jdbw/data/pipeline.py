"""Domains and their tf.data streams (paper §4.1).

A domain is a source + split + class distribution + transform. Its stream is infinite:
each draw picks a class with the domain's probability, then the next example of that
class's own reshuffled, repeated stream, then applies the transform with a per-draw
seed. Labels travel with images for evaluation and monitoring only.
"""

from __future__ import annotations

import dataclasses
import functools
import zlib
from typing import Iterator, Mapping, Sequence

import numpy as np

from jdbw.data import sampling, sources, transforms
from jdbw.errors import ConfigError


@dataclasses.dataclass(frozen=True)
class DomainSpec:
  """What a domain is made of; `name` ('x' or 'y') is the suffix of its flags."""
  source: str = "digits"
  split: str = "train"
  classes: str = ""
  transform: str = "plain"
  channels: int = 1
  name: str = "x"

  def flag(self, field: str) -> str:
    return f"--{field}_{self.name}"

  @functools.cached_property
  def parsed(self) -> sources.Source:
    """The source string parsed once (a one-line ConfigError naming --source_<name>)."""
    return sources.parse_source(self.source, self.flag("source"))

  @property
  def key(self) -> str:
    """A canonical, file-name-safe identifier (caches keyed by the domain)."""
    text = f"{self.source}|{self.split}|{self.classes}|{self.transform}|c{self.channels}"
    return f"{zlib.crc32(text.encode()):08x}"


@dataclasses.dataclass(frozen=True)
class Domain:
  spec: DomainSpec
  data: sources.SourceData
  probs: np.ndarray  # [num_classes] per-draw class probabilities

  @property
  def num_classes(self) -> int:
    return self.data.num_classes

  @property
  def is_points(self) -> bool:
    """Vector examples (a `mixture2d` source) rather than images."""
    return self.data.mixture is not None


def load_domain(spec: DomainSpec, *, data_dir: str | None = None,
                process_index: int = 0, process_count: int = 1) -> Domain:
  """Validates `spec` and loads this host's slice of its source."""
  transforms.get_transform(spec.transform, spec.flag("transform"))
  if spec.channels not in (1, 3):
    raise ConfigError(f"{spec.flag('channels')}: got {spec.channels}; expected 1 or 3")
  data = sources.load_source(spec.parsed, spec.split, data_dir=data_dir,
                             process_index=process_index, process_count=process_count,
                             what=spec.flag("source"))
  if data.mixture is not None:
    if spec.transform != "plain":
      raise ConfigError(f"{spec.flag('transform')}: {spec.transform!r} is an image transform;"
                        f" a {data.name.partition(':')[0]} domain takes 'plain' (no transform)")
  elif data.images.shape[-1] not in (1, 3):
    raise ConfigError(f"{spec.flag('source')}: images have {data.images.shape[-1]} channels;"
                      " expected 1 or 3")
  probs = sampling.class_probabilities(spec.classes, data.class_counts, spec.flag("classes"),
                                       data.class_names)
  return Domain(spec, data, probs)


def _stream_seed(seed: int, name: str, process_index: int) -> tuple[int, int]:
  ss = np.random.SeedSequence([seed, zlib.crc32(name.encode()), process_index])
  a, b = ss.generate_state(2)
  return int(a) & 0x7FFFFFFF, int(b) & 0x7FFFFFFF


def keep_tf_off_accelerators() -> None:
  """tf.data runs on the host; TF must not grab GPU/TPU memory that JAX needs."""
  import tensorflow as tf
  try:
    tf.config.set_visible_devices([], "GPU")
    tf.config.set_visible_devices([], "TPU")
  except (RuntimeError, ValueError):
    pass  # Already initialised, or no such device type: nothing to hide.


def domain_dataset(domain: Domain, *, seed: int, resolution: int = 32,
                   process_index: int = 0, skip: int = 0):
  """The domain's infinite stream of {'image': f32 [r, r, c] in [-1, 1], 'label': i32}.

  For a point domain (`mixture2d`) 'image' holds the point, f32 [2], unscaled.
  `skip`: draws dropped from the front before their transform runs (cheap), so the
  stream continues exactly where a stream of the same seed stood after `skip` draws.
  """
  import tensorflow as tf
  keep_tf_off_accelerators()
  shuffle_seed, elem_seed = _stream_seed(seed, domain.spec.name, process_index)
  if domain.is_points:  # {'image': f32 [2] (the point), 'label'}; no transform.
    return domain.data.mixture.dataset(domain.probs, elem_seed, domain.spec.split).skip(skip)
  labels = domain.data.labels
  classes = np.flatnonzero(domain.probs > 0)
  per_class = []
  for c in classes:
    idx = np.flatnonzero(labels == c)
    if domain.data.stream is not None:   # a large folder: read from its cache
      per_class.append(domain.data.stream.class_dataset(int(c), len(idx),
                                                        shuffle_seed + int(c)))
      continue
    ds = tf.data.Dataset.from_tensor_slices(
        {"image": domain.data.images[idx], "label": labels[idx]})
    ds = ds.shuffle(len(idx), seed=shuffle_seed + int(c), reshuffle_each_iteration=True)
    per_class.append(ds.repeat())
  ds = tf.data.Dataset.sample_from_datasets(
      per_class, weights=[float(p) for p in domain.probs[classes]], seed=shuffle_seed)
  transform = transforms.get_transform(domain.spec.transform)
  channels = domain.spec.channels

  def apply(index, example):
    draw_seed = tf.stack([tf.constant(elem_seed, tf.int64), index])
    image = transforms.match_channels(example["image"], channels)
    image = transform(image, draw_seed, resolution)
    return {"image": transforms.to_unit_range(image),
            "label": tf.cast(example["label"], tf.int32)}

  ds = tf.data.Dataset.zip(tf.data.Dataset.counter(), ds).skip(skip)
  return ds.map(apply, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)


def host_batch_size(global_batch: int, *, device_count: int, process_count: int,
                    what: str = "--batch_size") -> int:
  """This host's share of the global batch; every device gets an equal slice."""
  if global_batch <= 0 or global_batch % device_count:
    raise ConfigError(
        f"{what}: global batch {global_batch} must be a positive multiple of the"
        f" device count ({device_count})")
  return global_batch // process_count


def make_batches(domains: Mapping[str, Domain], global_batch: int, *, seed: int,
                 resolution: int = 32, stack: Sequence[int] = (),
                 device_count: int | None = None, process_index: int | None = None,
                 process_count: int | None = None, skip: int = 0) -> Iterator[dict]:
  """Host-local numpy batches {name: {'image', 'label'}} of all domains.

  Each element has shape [*stack, global_batch / process_count, r, r, c]; `stack`
  groups several steps' batches in one element (e.g. the d discriminator steps of
  one iteration). `skip`: elements dropped from the front (without transforming
  their images): the stream then equals the same seed's stream after `skip` elements.
  Device counts default to JAX's; see `jdbw.parallel` for turning a
  host batch into a pmap layout or a global sharded array.
  """
  import jax
  import tensorflow as tf
  device_count = jax.device_count() if device_count is None else device_count
  process_index = jax.process_index() if process_index is None else process_index
  process_count = jax.process_count() if process_count is None else process_count
  per_host = host_batch_size(global_batch, device_count=device_count,
                             process_count=process_count)
  streams = {}
  for name, domain in domains.items():
    draws = skip * per_host * int(np.prod(tuple(stack), dtype=np.int64))
    ds = domain_dataset(domain, seed=seed, resolution=resolution, process_index=process_index,
                        skip=draws).batch(per_host, drop_remainder=True)
    for n in reversed(tuple(stack)):
      ds = ds.batch(n, drop_remainder=True)
    streams[name] = ds
  ds = tf.data.Dataset.zip(streams).prefetch(tf.data.AUTOTUNE)
  options = tf.data.Options()
  options.deterministic = True
  return ds.with_options(options).as_numpy_iterator()
