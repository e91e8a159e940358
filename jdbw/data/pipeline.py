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
from absl import logging

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


# How the draws of the two domains relate: independent streams ('none'), or each Y draw
# the X draw's own example through Y's transform and channels ('same_draw', drawn with
# X's class distribution): one source gives (x, sr(x)) pairs; two folders give the pairs
# of their files of the same name (path relative to the split root): the two halves of
# one folder of pix2pix's A|B files (`folder:<dir>:half=left` / `half=right`), or two
# folders such as edges/ and photos/ holding the same file names.
PAIRINGS = ("none", "same_draw")


def check_pairing(domains: Mapping[str, Domain], pairing: str, warn: bool = True) -> None:
  """One ConfigError line when the loaded domains cannot be drawn with `pairing`; with
  `warn`, a warning when some of X's files have no pair (they are not drawn).
  `make_batches` checks again without the warning: a run makes a stream per segment and
  warns once, at its start (`jdbw.train`)."""
  if pairing not in PAIRINGS:
    raise ConfigError(f"--pairing: got {pairing!r}; expected one of {PAIRINGS}")
  if pairing == "none":
    return
  x, y = domains["x"], domains["y"]
  if x.is_points or y.is_points:
    raise ConfigError(f"--pairing: {pairing} pairs images; a point source has no pairs")
  if _same_source(x, y):
    return
  px, py = x.spec.parsed, y.spec.parsed
  if not (px.is_folder and py.is_folder) or y.spec.split != x.spec.split:
    raise ConfigError(
        f"--source_y: --pairing={pairing} draws each pair from one example of --source_x"
        f" (Y is that image through --transform_y, or the file of the same name in a Y"
        f" folder); got --source_y={y.spec.source!r} (split {y.spec.split!r}) and"
        f" --source_x={x.spec.source!r} (split {x.spec.split!r}): give the same source and"
        " split, two folders holding the same file names (one folder's half=left and"
        " half=right for A|B files), with the same split")
  if x.data.stream is not None or y.data.stream is not None:
    raise ConfigError(f"--source_x: --pairing={pairing} of two folders needs them in"
                      " memory; this split streams: set stream=no")
  index = pair_index(x, y)
  unpaired = [c for c in np.flatnonzero(x.probs > 0)
              if not (index[x.data.labels == c] >= 0).any()]
  if unpaired:
    names = [x.data.class_names[c] if x.data.class_names else str(c) for c in unpaired]
    raise ConfigError(
        f"--source_y: no file of {py.arg} (split {y.spec.split!r}) has the name of a file"
        f" of {px.arg} in X's class(es) {', '.join(names)}; --pairing={pairing} pairs two"
        " folders' files by their path relative to the split root (e.g. shoes/001.png in"
        " both)")
  lost = int((index < 0).sum())
  if lost and warn:
    logging.warning("--pairing=%s: %d of the %d files of %s (split %r) have no file of the"
                    " same name in %s; they are not drawn", pairing, lost, len(index), px.arg,
                    x.spec.split, py.arg)


def pair_index(x: Domain, y: Domain) -> np.ndarray:
  """int64 [N_x]: for each image of folder domain X, the index of Y's image of the same
  file name (path relative to the split root), or -1 if Y has none. Each host pairs
  within its own slice: with multiple hosts, two folders holding different file lists
  may lose some pairs (files of one name fall to different hosts)."""
  where = {n: i for i, n in enumerate(y.data.file_names)}
  return np.asarray([where.get(n, -1) for n in x.data.file_names], np.int64)


def _same_source(x: Domain, y: Domain) -> bool:
  return (y.spec.source, y.spec.split) == (x.spec.source, x.spec.split)


def _draws(domain: Domain, shuffle_seed: int, pairs=None, pair_of=None):
  """The domain's infinite stream of (index, {'image': uint8, 'label'}) before its
  transform: a class by the domain's probabilities, then that class's next example.
  `pairs`, `pair_of`: another domain's images and, for each of this domain's, the index
  of its pair there (-1: none; such an example is not drawn), drawn beside it ('pair')."""
  import tensorflow as tf
  labels = domain.data.labels
  classes = np.flatnonzero(domain.probs > 0)
  per_class = []
  for c in classes:
    idx = np.flatnonzero(labels == c)
    if pair_of is not None:
      idx = idx[pair_of[idx] >= 0]
    if domain.data.stream is not None:   # a large folder: read from its cache
      per_class.append(domain.data.stream.class_dataset(int(c), len(idx),
                                                        shuffle_seed + int(c)))
      continue
    slices = {"image": domain.data.images[idx], "label": labels[idx]}
    if pairs is not None:
      slices["pair"] = pairs[pair_of[idx]]
    ds = tf.data.Dataset.from_tensor_slices(slices)
    ds = ds.shuffle(len(idx), seed=shuffle_seed + int(c), reshuffle_each_iteration=True)
    per_class.append(ds.repeat())
  ds = tf.data.Dataset.sample_from_datasets(
      per_class, weights=[float(p) for p in domain.probs[classes]], seed=shuffle_seed)
  return tf.data.Dataset.zip(tf.data.Dataset.counter(), ds)


def _transformer(domain: Domain, elem_seed: int, resolution: int, aug_seed: int | None = None,
                 augment: bool = False):
  """(index, uint8 image) -> the domain's f32 image in [-1, 1], seeded per draw.

  A folder source's augmentations (options `load_size`, `flip`) come first, on the
  decoded image, seeded by (`aug_seed`, draw index): resize to `load_size`, a random crop
  back to `resolution`, a random horizontal flip; only with `augment` (the training
  stream, never the evaluation's draws). Paired data passes X's seed for both sides, so
  a pair shares its crop and flip."""
  import tensorflow as tf
  transform = transforms.get_transform(domain.spec.transform)
  channels = domain.spec.channels
  src = domain.spec.parsed
  opts = src.folder if src.is_folder else None
  load, flip = (opts.load_size, opts.flip == "yes") if opts and augment else (0, False)
  if load and load < resolution:
    raise ConfigError(f"{domain.spec.flag('source')}: folder option load_size={load} is"
                      f" below the model's --resolution={resolution} (the random crop's size)")
  aug_seed = elem_seed if aug_seed is None else aug_seed

  def augmented(image, seed):
    crop_seed, flip_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
    if load:
      image = transforms.resize(tf.cast(image, tf.float32), load)
      image = tf.image.stateless_random_crop(image, [resolution, resolution, image.shape[-1]],
                                             crop_seed)
    if flip:
      image = tf.image.stateless_random_flip_left_right(image, flip_seed)
    return image

  def apply(index, image):
    draw_seed = tf.stack([tf.constant(elem_seed, tf.int64), index])
    if load or flip:
      image = augmented(image, tf.stack([tf.constant(aug_seed, tf.int64), index]))
    image = transform(transforms.match_channels(image, channels), draw_seed, resolution)
    return transforms.to_unit_range(image)
  return apply


def domain_dataset(domain: Domain, *, seed: int, resolution: int = 32,
                   process_index: int = 0, skip: int = 0, augment: bool = False):
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
  transform = _transformer(domain, elem_seed, resolution, augment=augment)

  # Plain TensorFlow, no Python control flow on tensors: nothing for AutoGraph to
  # convert (it warned "could not transform ... closure mismatch" on every stream).
  @tf.autograph.experimental.do_not_convert
  def apply(index, example):
    return {"image": transform(index, example["image"]),
            "label": tf.cast(example["label"], tf.int32)}

  return _draws(domain, shuffle_seed).skip(skip).map(
      apply, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)


def paired_dataset(x: Domain, y: Domain, *, seed: int, resolution: int = 32,
                   process_index: int = 0, skip: int = 0, augment: bool = False):
  """The pairs' infinite stream {'x': {...}, 'y': {...}} of `--pairing=same_draw`: X's
  stream exactly as `domain_dataset(x)` draws it, and beside each draw the same example
  of Y (the same image, or Y's file of the same name: the other half of an A|B file)
  through Y's transform and channels (Y's own per-draw seeds), with the same label. X's
  files with no pair in Y are not drawn (`check_pairing` warns)."""
  import tensorflow as tf
  keep_tf_off_accelerators()
  shuffle_seed, x_seed = _stream_seed(seed, x.spec.name, process_index)
  _, y_seed = _stream_seed(seed, y.spec.name, process_index)
  to_x = _transformer(x, x_seed, resolution, augment=augment)
  to_y = _transformer(y, y_seed, resolution, aug_seed=x_seed,   # the pair's crop and flip
                      augment=augment)
  same = _same_source(x, y)

  @tf.autograph.experimental.do_not_convert   # as domain_dataset's
  def apply(index, example):
    label = tf.cast(example["label"], tf.int32)
    return {"x": {"image": to_x(index, example["image"]), "label": label},
            "y": {"image": to_y(index, example["image" if same else "pair"]),
                  "label": label}}

  pairs = (None, None) if same else (y.data.images, pair_index(x, y))
  return _draws(x, shuffle_seed, *pairs).skip(skip).map(
      apply, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)


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
                 process_count: int | None = None, skip: int = 0,
                 pairing: str = "none") -> Iterator[dict]:
  """Host-local numpy batches {name: {'image', 'label'}} of all domains.

  Each element has shape [*stack, global_batch / process_count, r, r, c]; `stack`
  groups several steps' batches in one element (e.g. the d discriminator steps of
  one iteration). `skip`: elements dropped from the front (without transforming
  their images): the stream then equals the same seed's stream after `skip` elements.
  Device counts default to JAX's; see `jdbw.parallel` for turning a
  host batch into a pmap layout or a global sharded array. `pairing` (`PAIRINGS`):
  'same_draw' draws X and Y as pairs (`paired_dataset`). A folder source's draw-time
  augmentations (`load_size=`, `flip=`) apply here, the training stream.
  """
  import jax
  import tensorflow as tf
  device_count = jax.device_count() if device_count is None else device_count
  process_index = jax.process_index() if process_index is None else process_index
  process_count = jax.process_count() if process_count is None else process_count
  per_host = host_batch_size(global_batch, device_count=device_count,
                             process_count=process_count)
  draws = skip * per_host * int(np.prod(tuple(stack), dtype=np.int64))

  def batched(ds):
    ds = ds.batch(per_host, drop_remainder=True)
    for n in reversed(tuple(stack)):
      ds = ds.batch(n, drop_remainder=True)
    return ds

  if pairing == "none":
    ds = tf.data.Dataset.zip({
        name: batched(domain_dataset(domain, seed=seed, resolution=resolution,
                                     process_index=process_index, skip=draws,
                                     augment=True))
        for name, domain in domains.items()})
  else:
    check_pairing(domains, pairing, warn=False)
    ds = batched(paired_dataset(domains["x"], domains["y"], seed=seed, resolution=resolution,
                                process_index=process_index, skip=draws, augment=True))
  ds = ds.prefetch(tf.data.AUTOTUNE)
  options = tf.data.Options()
  options.deterministic = True
  return ds.with_options(options).as_numpy_iterator()
