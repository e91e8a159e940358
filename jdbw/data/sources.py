"""Data sources: `tfds:<name>`, `idx:<dir>`, `digits` and `folder:<dir>` (your own
images, `jdbw.data.folder`), all as uint8 arrays with labels, and `mixture2d[:...]`, a
2-D Gaussian mixture drawn on the fly (`jdbw.data.mixture`).

An image source is loaded whole into host memory (the paper's data sets are at most a
few hundred MB; a folder above `jdbw.data.folder.STREAM_BYTES` streams from its cache
instead), already restricted to this host's slice of the split on multi-host
runs, so every host reads only its own part.
"""

from __future__ import annotations

import dataclasses
import os
from typing import NamedTuple

import numpy as np

from jdbw.data import folder as folder_lib
from jdbw.data import mixture as mixture_lib
from jdbw.errors import ConfigError, DataUnavailableError

OFFLINE_ALTERNATIVES = (
    "offline alternatives: --source_{x,y}=idx:<dir> with MNIST-format IDX files"
    " (Debian: `apt-get install dataset-fashion-mnist` gives"
    " idx:/usr/share/datasets/fashion-mnist) or --source_{x,y}=digits"
    " (scikit-learn's bundled digits)")


@dataclasses.dataclass(frozen=True)
class SourceData:
  """One split of a labelled image data set, this host's slice of it.

  A large folder source streams (`stream` set): its pixels stay in the on-disk cache,
  `images` is empty (its shape gives the image size and channels) and `labels` holds
  every file's label, in the order the stream's indices follow.

  For a `mixture2d` source `mixture` is set and `images`/`labels` are empty: points are
  drawn on the fly, and the modes' natural frequencies are equal.
  """
  name: str
  images: np.ndarray   # uint8 [N, H, W, C]
  labels: np.ndarray   # int32 [N]
  num_classes: int
  mixture: mixture_lib.Mixture2D | None = None
  class_names: tuple = ()     # folder sources: the class subfolders' names
  labelled: bool = True       # False: an unlabelled folder (one class, label 0)
  stream: folder_lib.FolderStream | None = None   # a streamed folder: `images` is empty
  file_names: tuple = ()      # folder sources: each image's path relative to the split root

  @property
  def mixture_dim(self) -> int | None:
    return mixture_lib.DIM if self.mixture is not None else None

  @property
  def class_counts(self) -> np.ndarray:
    if self.mixture is not None:
      return np.ones(self.num_classes, np.int64)
    return np.bincount(self.labels, minlength=self.num_classes)


@dataclasses.dataclass(frozen=True)
class Source:
  """A data source string parsed once (`parse_source`; `DomainSpec.parsed` keeps it).

  `kind`: 'digits', 'tfds', 'idx', 'folder' or 'mixture2d'; `arg`: the TFDS name, the IDX
  directory or the folder's directory; `folder` / `mixture`: the parsed options of a
  folder or mixture source.
  """
  text: str                 # as given (--source_x / --source_y)
  kind: str
  arg: str = ""
  folder: folder_lib.FolderOptions | None = None
  mixture: mixture_lib.Mixture2D | None = None

  @property
  def is_points(self) -> bool:
    return self.mixture is not None

  @property
  def is_folder(self) -> bool:
    return self.kind == folder_lib.NAME

  @property
  def dataset_name(self) -> str:
    """The data set's name, which keys the evaluation classifiers' thresholds and
    caches: 'tfds:fashion_mnist:3.0.1' and 'idx:/x/fashion-mnist' -> 'fashion_mnist'."""
    if self.kind in ("digits", mixture_lib.NAME):
      return self.kind
    if self.kind == "tfds":
      return self.arg.split(":")[0].split("/")[0]
    return os.path.basename(os.path.normpath(self.arg)).lower().replace("-", "_")


def parse_source(text: str, what: str = "--source") -> Source:
  """'digits', 'tfds:<name>', 'idx:<dir>', 'folder:<dir>[:key=value,...]' or
  'mixture2d[:key=value,...]' -> Source; one-line ConfigError (naming `what`) otherwise."""
  kind, _, arg = text.partition(":")
  if kind == mixture_lib.NAME:
    return Source(text, kind, mixture=mixture_lib.parse(text, what))
  if kind == "digits" and not arg:
    return Source(text, kind)
  if kind in ("tfds", "idx") and arg:
    return Source(text, kind, arg)
  if kind == folder_lib.NAME and arg:
    directory, options = folder_lib.parse(text, what)
    return Source(text, kind, directory, folder=options)
  raise ConfigError(
      f"{what}: unknown source {text!r}; expected 'digits', 'tfds:<name>', 'idx:<dir>',"
      f" 'folder:<dir>' or '{mixture_lib.NAME}[:key=value,...]'")


class _SplitSize(NamedTuple):
  num_examples: int   # What TFDS's ReadInstruction reads of a split's info.


def _slice(split: str, sizes: dict, what: str, source: str) -> tuple[str, slice]:
  """(split name, index slice) of a TFDS-style split spec ('train', 'train[:90%]',
  'train[1000:]') over in-memory splits of the given sizes; TFDS's own rounding."""
  import tensorflow_datasets as tfds
  try:
    instructions = tfds.core.ReadInstruction.from_spec(split).to_absolute(
        {k: _SplitSize(n) for k, n in sizes.items()})
  except (ValueError, KeyError, AssertionError) as e:
    raise ConfigError(f"{what}: source {source!r} has splits {sorted(sizes)} (slices like"
                      f" 'train[:90%]' allowed), not {split!r}") from e
  if len(instructions) != 1:
    raise ConfigError(f"{what}: source {source!r} takes one split or slice, not {split!r}")
  ins = instructions[0]
  return ins.splitname, slice(ins.from_, ins.to)


def splits_overlap(a: str, b: str) -> bool:
  """Whether TFDS-style split specs `a` and `b` of one image source share examples
  ('train[:90%]' and 'train[90%:]' do not; 'train' and 'train[90%:]' do). Judged on the
  specs (a nominal split size), so a percent slice against an absolute one is approximate."""
  sizes = {"train": 10 ** 6, "test": 10 ** 6}
  try:
    (na, sa), (nb, sb) = (_slice(x, sizes, "split", "") for x in (a, b))
  except ConfigError:
    return a == b
  if na != nb:
    return False
  ra, rb = range(10 ** 6)[sa], range(10 ** 6)[sb]
  return max(ra.start, rb.start) < min(ra.stop, rb.stop)


def _load_digits(split: str, what: str) -> tuple[np.ndarray, np.ndarray, int]:
  from sklearn import datasets  # Imported lazily: only this source needs it.
  digits = datasets.load_digits()
  # A fixed 80/20 split (every fifth sample held out) so `test` is always the same.
  held_out = np.arange(len(digits.target)) % 5 == 0
  name, part = _slice(split, {"train": int((~held_out).sum()), "test": int(held_out.sum())},
                      what, "digits")
  keep = np.flatnonzero(held_out if name == "test" else ~held_out)[part]
  if len(keep) == 0:
    raise ConfigError(f"{what}: split {split!r} of source 'digits' is empty")
  images = np.round(digits.images[keep] * (255.0 / 16.0)).astype(np.uint8)[..., None]
  return images, digits.target[keep].astype(np.int32), 10


_TFDS_HOST = "storage.googleapis.com"


def data_dir_is_remote(data_dir: str | None) -> bool:
  return bool(data_dir) and "://" in data_dir


def _online(timeout: float = 5.0) -> bool:
  """Whether TFDS's download host resolves and accepts a connection.

  Offline, TFDS itself retries for minutes before failing; this answers in seconds.
  """
  import socket
  try:
    with socket.create_connection((_TFDS_HOST, 443), timeout=timeout):
      return True
  except OSError:
    return False


def _tfds_load(builder, split: str, process_index: int, process_count: int):
  import tensorflow_datasets as tfds
  if process_count > 1:
    split = tfds.split_for_jax_process(
        split, process_index=process_index, process_count=process_count)
  ds = builder.as_dataset(split=split, batch_size=-1, as_supervised=True)
  images, labels = tfds.as_numpy(ds)
  if images.ndim == 3:
    images = images[..., None]
  return (images.astype(np.uint8), labels.astype(np.int32),
          builder.info.features[builder.info.supervised_keys[1]].num_classes)


def _load_tfds(name: str, split: str, data_dir: str | None, what: str,
               process_index: int, process_count: int):
  import tensorflow_datasets as tfds
  try:
    builder = tfds.builder(name, data_dir=data_dir)
  except tfds.core.registered.DatasetNotFoundError as e:
    raise ConfigError(
        f"{what}: TFDS has no data set named {name!r} (e.g. mnist, svhn_cropped,"
        " fashion_mnist)") from e
  if builder.info.supervised_keys is None:
    raise ConfigError(f"{what}: TFDS data set {name!r} has no (image, label) supervised keys")
  if not builder.is_prepared() and not data_dir_is_remote(data_dir) and not _online():
    raise DataUnavailableError(
        f"{what}: TFDS data set {name!r} is not prepared in"
        f" {data_dir or '~/tensorflow_datasets'} and this machine cannot reach"
        f" {_TFDS_HOST} to download it; use one of the {OFFLINE_ALTERNATIVES}")
  try:
    builder = prepared(builder, lambda: tfds.builder(name, data_dir=data_dir))
  except Exception as e:  # TFDS raises many types for a failed download.
    first = str(e).strip().splitlines()[0][:200] if str(e).strip() else ""
    raise DataUnavailableError(
        f"{what}: TFDS could not download/prepare {name!r} into"
        f" {data_dir or '~/tensorflow_datasets'} ({type(e).__name__}: {first});"
        f" if this machine is offline, use one of the {OFFLINE_ALTERNATIVES}") from e
  if split.split("[")[0] not in builder.info.splits:
    raise ConfigError(
        f"{what}: TFDS data set {name!r} has splits {sorted(builder.info.splits)},"
        f" not {split!r}")
  return _tfds_load(builder, split, process_index, process_count)


def _load_idx(directory: str, split: str, data_dir: str | None, what: str,
              process_index: int, process_count: int):
  from jdbw.data import idx_builder
  if split.split("[")[0] not in ("train", "test"):
    raise ConfigError(f"{what}: IDX sources have splits 'train' and 'test', not {split!r}")
  layout = idx_builder.inspect_idx_dir(directory, what)
  builder = prepared(idx_builder.idx_builder(layout, data_dir),
                     lambda: idx_builder.idx_builder(layout, data_dir))
  return _tfds_load(builder, split, process_index, process_count)


def prepared(builder, rebuild):
  """`builder` after `download_and_prepare()`, safe when several processes (those of one
  host, or two runs started together on a new machine) prepare the same data set at
  once: TFDS writes each copy into its own incomplete directory and renames it into
  place, and every rename but the first fails with FileExistsError. The copy in place
  is the same data set; a builder made anew (`rebuild()`) reads it."""
  try:
    builder.download_and_prepare()
    return builder
  except FileExistsError:
    builder = rebuild()
    if not builder.is_prepared():
      raise
    return builder


def load_source(source: Source | str, split: str = "train", *, data_dir: str | None = None,
                process_index: int = 0, process_count: int = 1,
                what: str = "--source") -> SourceData:
  """Loads `source` (a `Source`, or its string: 'digits', 'tfds:<name>', 'idx:<dir>',
  'folder:<dir>[:...]' or 'mixture2d[:...]'), this host's slice.

  `what` names the flag in error messages.
  """
  if isinstance(source, str):
    source = parse_source(source, what)
  spec, kind, arg = source.text, source.kind, source.arg
  if source.is_points:
    if split not in ("train", "validation", "test"):
      raise ConfigError(f"{what}: {mixture_lib.NAME} has splits 'train', 'validation' and"
                        f" 'test' (independent infinite streams, no slices), not {split!r}")
    empty = np.zeros((0, mixture_lib.DIM), np.float32)
    return SourceData(spec, empty, np.zeros((0,), np.int32), source.mixture.modes,
                      mixture=source.mixture)
  if kind == "digits":
    images, labels, k = _load_digits(split, what)
    images, labels = images[process_index::process_count], labels[process_index::process_count]
  elif kind == "tfds":
    images, labels, k = _load_tfds(arg, split, data_dir, what, process_index, process_count)
  elif kind == "idx":
    images, labels, k = _load_idx(arg, split, data_dir, what, process_index, process_count)
  else:
    meta, images, names = folder_lib.load(arg, source.folder, split, what)
    name = split.split("[")[0]
    # The slice is cut from every class alike (a validation slice holds every class).
    keep, ranges = folder_lib.select(
        meta["labels"], max(len(names), 1), split,
        lambda sp, n: _slice(sp, {name: n}, what, spec)[1], process_index, process_count)
    labels = meta["labels"][keep]
    if len(labels) == 0:
      raise ConfigError(f"{what}: source {spec!r} split {split!r} is empty on this host")
    stream = None
    if images is None:   # streamed from the cache: no pixels in memory
      stream = folder_lib.FolderStream(meta["cache"], ranges, process_index, process_count)
      size = meta["size"]
      images = np.zeros((0, size, size, meta["channels"]), np.uint8)
    else:
      images = images[keep]
    files = tuple(meta["files"][i] for i in keep)
    return SourceData(spec, images, labels, max(len(names), 1), class_names=names,
                      labelled=bool(names), stream=stream, file_names=files)
  if len(labels) == 0:
    raise ConfigError(f"{what}: source {spec!r} split {split!r} is empty on this host")
  return SourceData(spec, images, labels, int(k))
