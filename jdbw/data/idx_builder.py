"""MNIST-format IDX files as a TFDS data set (manual data, prepared and cached by TFDS).

Air-gapped clusters keep MNIST as the four IDX `.gz` files; Debian's
`dataset-fashion-mnist` installs real Fashion-MNIST the same way under
`/usr/share/datasets/fashion-mnist/`. Routing them through a TFDS builder means they
are prepared once into `data_dir` and read back like any other TFDS data set
(including `tfds.split_for_jax_process` slicing on multi-host runs).
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import os
import struct
import zlib

import numpy as np
import tensorflow_datasets as tfds

from jdbw.errors import ConfigError

# Split name -> file prefix, as in the MNIST distribution.
_PREFIX = {"train": "train", "test": "t10k"}
_UBYTE = 0x08


def _open(path):
  return gzip.open(path, "rb") if path.endswith(".gz") else open(path, "rb")


def find_idx_file(directory: str, split: str, kind: str, what: str) -> str:
  """Path of `{prefix}-{kind}-idx{1,3}-ubyte[.gz]` in `directory`."""
  ndim = 3 if kind == "images" else 1
  stem = f"{_PREFIX[split]}-{kind}-idx{ndim}-ubyte"
  for name in (stem + ".gz", stem):
    path = os.path.join(directory, name)
    if os.path.isfile(path):
      return path
  raise ConfigError(
      f"{what}: IDX directory {directory!r} has no {stem}.gz (nor {stem});"
      " expected MNIST-format files train-/t10k-images-idx3-ubyte.gz and"
      " train-/t10k-labels-idx1-ubyte.gz")


def read_idx_header(path: str, what: str) -> tuple[int, ...]:
  """Dimensions stored in an IDX file's header; ConfigError if malformed."""
  try:
    with _open(path) as f:
      head = f.read(4)
      if len(head) != 4 or head[0] != 0 or head[1] != 0 or head[2] != _UBYTE:
        raise ConfigError(
            f"{what}: {path} is not an unsigned-byte IDX file (bad magic"
            f" {head.hex()!r}; expected 0x0000 08 nn)")
      ndim = head[3]
      raw = f.read(4 * ndim)
      if len(raw) != 4 * ndim:
        raise ConfigError(f"{what}: {path} has a truncated IDX header")
      return struct.unpack(">" + "I" * ndim, raw)
  except (OSError, EOFError, gzip.BadGzipFile, zlib.error) as e:
    raise ConfigError(f"{what}: cannot read IDX file {path} ({e})") from e


def read_idx(path: str, what: str) -> np.ndarray:
  """The whole array stored in an IDX file (uint8)."""
  shape = read_idx_header(path, what)
  offset = 4 + 4 * len(shape)
  try:
    with _open(path) as f:
      data = f.read()
  except (OSError, EOFError, gzip.BadGzipFile, zlib.error) as e:  # e.g. a gzip cut short
    raise ConfigError(f"{what}: cannot read IDX file {path} ({type(e).__name__}: {e});"
                      " the file is truncated or damaged, copy it again") from e
  body = np.frombuffer(data, dtype=np.uint8, offset=offset)
  if body.size != int(np.prod(shape)):
    raise ConfigError(
        f"{what}: {path} holds {body.size} bytes of data but its header"
        f" announces shape {shape}")
  return body.reshape(shape)


@dataclasses.dataclass(frozen=True)
class IdxLayout:
  """What the headers of an IDX directory say; validated at start-up."""
  directory: str
  height: int
  width: int
  num_classes: int
  files: tuple[str, ...]


def inspect_idx_dir(directory: str, what: str) -> IdxLayout:
  """Validates the four IDX files of `directory` (headers, counts, labels)."""
  directory = os.path.abspath(os.path.expanduser(directory))
  if not os.path.isdir(directory):
    raise ConfigError(
        f"{what}: IDX directory {directory!r} does not exist (expected a"
        " directory with MNIST-format .gz files, e.g."
        " /usr/share/datasets/fashion-mnist from Debian's dataset-fashion-mnist)")
  files, hw, num_classes = [], None, 0
  for split in _PREFIX:
    img_path = find_idx_file(directory, split, "images", what)
    lab_path = find_idx_file(directory, split, "labels", what)
    img_shape = read_idx_header(img_path, what)
    lab_shape = read_idx_header(lab_path, what)
    if len(img_shape) != 3:
      raise ConfigError(
          f"{what}: {img_path} has shape {img_shape}; expected 3 dims (N, H, W)")
    if len(lab_shape) != 1 or lab_shape[0] != img_shape[0]:
      raise ConfigError(
          f"{what}: {lab_path} has shape {lab_shape}; expected ({img_shape[0]},)"
          f" to match {os.path.basename(img_path)}")
    if hw is not None and hw != img_shape[1:]:
      raise ConfigError(f"{what}: train and test images differ in size in {directory}")
    hw = img_shape[1:]
    labels = read_idx(lab_path, what)
    num_classes = max(num_classes, int(labels.max()) + 1 if labels.size else 0)
    files += [img_path, lab_path]
  return IdxLayout(directory, hw[0], hw[1], num_classes, tuple(files))


@dataclasses.dataclass(eq=False)
class IdxConfig(tfds.core.BuilderConfig):
  layout: IdxLayout | None = None


class IdxImages(tfds.core.GeneratorBasedBuilder):
  """Grey images + integer labels read from an IDX directory (manual data)."""

  VERSION = tfds.core.Version("1.0.0")
  MANUAL_DOWNLOAD_INSTRUCTIONS = "Point --source at idx:<dir> holding MNIST-format IDX files."

  def _info(self) -> tfds.core.DatasetInfo:
    layout = self.builder_config.layout
    return self.dataset_info_from_configs(
        features=tfds.features.FeaturesDict({
            # Raw uint8 tensors: preparing 70k PNGs would cost more than the
            # data is worth at this size.
            "image": tfds.features.Tensor(
                shape=(layout.height, layout.width, 1), dtype=np.uint8),
            "label": tfds.features.ClassLabel(num_classes=layout.num_classes),
        }),
        supervised_keys=("image", "label"),
        description=f"IDX images from {layout.directory}",
    )

  def _split_generators(self, dl_manager):
    del dl_manager  # Data is read straight from the configured directory.
    return {split: self._generate_examples(split) for split in _PREFIX}

  def _generate_examples(self, split):
    layout = self.builder_config.layout
    what = f"idx:{layout.directory}"
    images = read_idx(find_idx_file(layout.directory, split, "images", what), what)
    labels = read_idx(find_idx_file(layout.directory, split, "labels", what), what)
    for i, (image, label) in enumerate(zip(images, labels)):
      yield i, {"image": image[..., None], "label": int(label)}


def idx_builder(layout: IdxLayout, data_dir: str | None) -> IdxImages:
  """A builder whose cache key changes when the directory or its files change."""
  h = hashlib.sha1(layout.directory.encode())
  for path in layout.files:
    st = os.stat(path)
    h.update(f"{os.path.basename(path)}:{st.st_size}:{int(st.st_mtime)}".encode())
  config = IdxConfig(name="d" + h.hexdigest()[:16], layout=layout,
                     version=IdxImages.VERSION)
  return IdxImages(config=config, data_dir=data_dir)
