"""Image-folder domains: `folder:<dir>[:key=value,...]`, your own data.

Layout (immediate subfolders of `<dir>`, or of `<dir>/train` and `<dir>/test`):

  <dir>/<class name>/*.png|jpg|jpeg     labelled: classes are the sorted subfolder names
  <dir>/*.png|jpg|jpeg                  unlabelled (one class, no label-based metrics)
  <dir>/train/..., <dir>/test/...       explicit splits (each laid out as above)

Without `train/` and `test/` subfolders the split is a deterministic hash of each file's
path relative to the split root: a file is in 'test' when crc32(path) / 2^32 <
`test_fraction` (default 0.1), else in 'train'. Slices ('train[:90%]') work on either and
cut every class alike (`select`): within a class, files are in a fixed hash order (not by
name), and `train[90%:]` is the last tenth of each class, so a validation slice holds
every class at its share.

Options: `size` (side of the stored images, default 128; the domain's transform then
resizes to the model's resolution), `fit` ('resize': squash to a square, the default;
'crop': centre-crop the largest square, then resize), `test_fraction`, `max_bad`
(fraction of undecodable files skipped with a warning before the folder is refused,
default 0.05), `stream` ('auto', the default: a split of more than 1 GiB decoded streams,
a smaller one is read into memory; 'yes'; 'no'). Grey, RGB and RGBA files mix freely
(alpha dropped; a folder holding any colour image, by its files' headers, is stored as
RGB, else grey); `--channels_*` converts at stream time. Draw-time augmentations of the
training stream (CycleGAN's; off by default, no effect on the cache or on evaluation
draws): `load_size` (resize to it, then a random crop back to the model's resolution;
at least that resolution) and `flip` ('no', the default, or 'yes': a random horizontal
flip); a pair of `--pairing=same_draw` shares its crop and flip.

Each split is decoded and resized once, file by file (one image in memory at a time),
with tf.image into a cache of tf.data saved datasets (`tf.data.Dataset.save`, one per
class) under `~/.cache/jdbw/folders` (or `$JDBW_CACHE`), keyed by the folder's file
list, sizes and modification times and the options: a changed folder is decoded again.
A streamed split is then read from that cache class by class (`FolderStream`), shuffled
through a buffer of up to 4096 images per class; a small one is loaded from it whole and
drawn exactly as the other in-memory sources are (with the whole class in the buffer the
two are the same stream, draw for draw).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import zlib

import numpy as np
from absl import logging

from jdbw.errors import ConfigError

NAME = "folder"
EXTENSIONS = (".png", ".jpg", ".jpeg")
FITS = ("resize", "crop")


@dataclasses.dataclass(frozen=True)
class FolderOptions:
  size: int = 128
  fit: str = "resize"
  test_fraction: float = 0.1
  max_bad: float = 0.05
  stream: str = "auto"
  half: str = ""          # 'left' / 'right': that half of each file (pix2pix's A|B images)
  # Augmentations at draw time (CycleGAN's): resize to `load_size`, then a random crop
  # back to the model's resolution; `flip=yes`: a random horizontal flip. Off by default;
  # they change no decoded cache.
  load_size: int = 0
  flip: str = "no"


STREAMS = ("auto", "yes", "no")
FLIPS = ("no", "yes")
AUGMENTATIONS = ("load_size", "flip")   # draw-time options: not part of any cache key
HALVES = ("", "left", "right")
STREAM_BYTES = 2 ** 30   # stream=auto: a split above 1 GiB decoded is read as a stream
CACHE_FORMAT = 4         # part of the cache key: bump when the cache layout changes
                         # (4: meta.json lists the kept files, for pairing by name)


def parse(spec: str, what: str) -> tuple[str, FolderOptions]:
  """('<dir>', options) of 'folder:<dir>[:key=value,...]'."""
  body = spec[len(NAME) + 1:]
  directory, opts = body, ""
  head, sep, tail = body.rpartition(":")
  if sep and "=" in tail:   # options follow the last ':' (a directory may hold ':')
    directory, opts = head, tail
  kw = {}
  fields = {f.name: f.type for f in dataclasses.fields(FolderOptions)}
  for item in filter(None, opts.split(",")):
    key, eq, value = item.partition("=")
    if key not in fields or not eq:
      raise ConfigError(f"{what}: folder option {item!r}; expected key=value with keys"
                        f" {sorted(fields)}")
    try:
      kw[key] = (value if key in ("fit", "stream", "half", "flip")
                 else (int(value) if key in ("size", "load_size") else float(value)))
    except ValueError:
      raise ConfigError(f"{what}: folder option {key}={value!r} is not a number") from None
  o = FolderOptions(**kw)
  if not directory:
    raise ConfigError(f"{what}: expected folder:<directory>, got {spec!r}")
  if (o.fit not in FITS or o.stream not in STREAMS or o.half not in HALVES or o.size < 8
      or not 0 <= o.test_fraction < 1 or not 0 <= o.max_bad < 1 or o.flip not in FLIPS
      or o.load_size < 0):
    raise ConfigError(f"{what}: folder options {o}: expected fit in {FITS}, stream in"
                      f" {STREAMS}, half in {HALVES[1:]}, flip in {FLIPS}, size >= 8,"
                      " load_size >= 0, 0 <= test_fraction < 1, 0 <= max_bad < 1")
  return directory, o


def _images_in(d: str) -> list[str]:
  return sorted(n for n in os.listdir(d)
                if n.lower().endswith(EXTENSIONS) and os.path.isfile(os.path.join(d, n)))


def _subfolders(d: str) -> list[str]:
  return sorted(n for n in os.listdir(d)
                if os.path.isdir(os.path.join(d, n)) and not n.startswith("."))


def scan(directory: str, split: str, opts: FolderOptions, what: str):
  """(split root, relative paths, labels, class names) of one split, before slicing.

  Class names are () for an unlabelled folder (every label 0).
  """
  if not os.path.isdir(directory):
    raise ConfigError(f"{what}: folder {directory!r} does not exist or is not a directory")
  name = split.split("[")[0]
  if name not in ("train", "test"):
    raise ConfigError(f"{what}: folder sources have splits 'train' and 'test', not {split!r}")
  subs = _subfolders(directory)
  explicit = "train" in subs and "test" in subs
  if not explicit and ("train" in subs or "test" in subs):
    have, missing = ("train", "test") if "train" in subs else ("test", "train")
    raise ConfigError(f"{what}: folder {directory} has a {have}/ subfolder but no {missing}/;"
                      " give both (explicit splits) or neither (a hash split)")
  root = os.path.join(directory, name) if explicit else directory
  classes = _subfolders(root)
  if explicit:
    train_c, test_c = (set(_subfolders(os.path.join(directory, s))) for s in ("train", "test"))
    if train_c != test_c:
      raise ConfigError(
          f"{what}: {directory}/train and {directory}/test hold different class subfolders"
          f" (train only: {sorted(train_c - test_c)}, test only: {sorted(test_c - train_c)});"
          " labels are the sorted names, so both must have the same classes")
  loose = _images_in(root)
  if classes and loose:
    raise ConfigError(f"{what}: {root} holds both images ({len(loose)}) and subfolders"
                      f" ({', '.join(classes[:5])}); put every image in a class subfolder,"
                      " or no subfolders for an unlabelled domain")
  if classes:
    paths, labels = [], []
    for k, c in enumerate(classes):
      files = _images_in(os.path.join(root, c))
      if not files:
        raise ConfigError(f"{what}: class subfolder {os.path.join(root, c)} has no"
                          f" {'/'.join(EXTENSIONS)} images")
      paths += [os.path.join(c, f) for f in files]
      labels += [k] * len(files)
  else:
    paths, labels = loose, [0] * len(loose)
  if not paths:
    raise ConfigError(f"{what}: folder {root} has no {'/'.join(EXTENSIONS)} images")
  if not explicit:
    test = [zlib.crc32(p.encode()) / 2 ** 32 < opts.test_fraction for p in paths]
    keep = [t == (name == "test") for t in test]
    kept = [lab for lab, k in zip(labels, keep) if k]
    for k, c in enumerate(classes or ("",)):
      if k not in kept:
        n = labels.count(k)
        raise ConfigError(f"{what}: the hash split (test_fraction={opts.test_fraction:g})"
                          f" leaves no image of {os.path.join(root, c)} ({n} image(s)) in"
                          f" {name!r}; add images, change test_fraction, or give train/ and"
                          " test/ subfolders")
    paths = [p for p, k in zip(paths, keep) if k]
    labels = kept
  # Class by class (labels ascending), each class in a fixed hash order of its paths, so
  # that a slice cut per class (`select`) is a deterministic sample of it, not its
  # alphabetically last files.
  order = sorted(range(len(paths)),
                 key=lambda i: (labels[i], zlib.crc32(b"order:" + paths[i].encode()), paths[i]))
  paths = [paths[i] for i in order]
  labels = [labels[i] for i in order]
  return root, paths, np.asarray(labels, np.int32), tuple(classes)


def select(labels: np.ndarray, num_classes: int, split: str, slice_of, process_index: int = 0,
           process_count: int = 1) -> tuple[np.ndarray, tuple]:
  """(indices, ranges) of this host's part of a slice of a split, the slice cut from each
  class alike: `slice_of(split, n)` is the python slice of a split of n examples (TFDS's
  rounding), applied to every class's run of the class-sorted `labels`; each host then
  takes every `process_count`-th file of each class's part. `ranges[k]` = (lo, hi) of class
  k's part among all indices (for `FolderStream`)."""
  out, ranges = [], []
  for k in range(num_classes):
    idx = np.flatnonzero(labels == k)
    lo, hi, _ = slice_of(split, len(idx)).indices(len(idx))
    base = int(idx[0]) if len(idx) else 0
    ranges.append((base + lo, base + max(lo, hi)))
    out.append(idx[lo:hi][process_index::process_count])
  return np.concatenate(out).astype(np.int64), tuple(ranges)


def _cache_dir(root, paths, opts) -> str:
  """The cache of one split: keyed by the folder's file list, sizes and modification
  times and the decoding options (not `stream`, which only says how it is read)."""
  key = {k: v for k, v in dataclasses.asdict(opts).items()
         if k not in ("stream",) + AUGMENTATIONS
         and not (k == "half" and not v)}   # caches before `half` stay valid
  h = hashlib.sha256(json.dumps([os.path.abspath(root), key, CACHE_FORMAT]).encode())
  for p in paths:
    st = os.stat(os.path.join(root, p))
    h.update(f"{p}|{st.st_size}|{st.st_mtime_ns}\n".encode())
  return os.path.join(cache_root(), "folders", h.hexdigest()[:20])


def cache_root() -> str:
  """The folder of jdbw's caches (decoded folders, evaluation classifiers):
  `$JDBW_CACHE`, else `~/.cache/jdbw`."""
  return os.environ.get("JDBW_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "jdbw")


_GREY_MODES = ("1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F")


def _is_colour(path: str) -> bool:
  """From the file's header only (Pillow reads no pixels here); False if unreadable."""
  from PIL import Image
  try:
    with Image.open(path) as im:
      return im.mode not in _GREY_MODES
  except Exception:  # noqa: BLE001 -- an unreadable file is counted when it is decoded.
    return False


def _decode_one(path: str, opts: FolderOptions, channels: int):
  """uint8 [size, size, channels] of one file, or None if it does not decode; also the
  file's (height, width)."""
  import tensorflow as tf
  try:
    img = tf.io.decode_image(tf.io.read_file(path), expand_animations=False)
  except (tf.errors.InvalidArgumentError, tf.errors.NotFoundError):
    return None, None
  shape = tuple(img.shape[:2])
  if img.shape[-1] == 4:
    img = img[..., :3]
  if img.shape[-1] == 2:   # grey + alpha
    img = img[..., :1]
  if opts.half:   # pix2pix's aligned A|B files: A on the left, B on the right
    w = img.shape[1] // 2
    img = img[:, :w] if opts.half == "left" else img[:, w:2 * w]
  if opts.fit == "crop":
    h, w = img.shape[:2]
    s = min(h, w)
    img = img[(h - s) // 2:(h - s) // 2 + s, (w - s) // 2:(w - s) // 2 + s]
  img = tf.image.resize(tf.cast(img, tf.float32), (opts.size, opts.size), antialias=True)
  out = np.clip(np.rint(img.numpy()), 0, 255).astype(np.uint8)
  if out.shape[-1] != channels:   # a grey file in a colour folder
    out = np.repeat(out, channels, -1)
  return out, shape


def decode(root, paths, labels, classes, opts, what, cache):
  """Decodes a split file by file into `cache` (one tf.data saved dataset per class,
  elements {'image': uint8 [size, size, C], 'index': int64 position among the kept
  files}, and meta.json with the kept files' labels); memory holds one image at a time.
  Undecodable files are skipped up to `max_bad` of them, else the folder is refused."""
  import shutil
  import tensorflow as tf
  channels = 3 if any(_is_colour(os.path.join(root, p)) for p in paths) else 1
  tmp = f"{cache}.tmp{os.getpid()}"
  shutil.rmtree(tmp, ignore_errors=True)
  os.makedirs(tmp)
  bad, shapes, kept_labels, kept_files = [], set(), [], []
  limit = opts.max_bad * len(paths)
  spec = {"image": tf.TensorSpec((opts.size, opts.size, channels), tf.uint8),
          "index": tf.TensorSpec((), tf.int64)}
  try:
    for k in range(max(len(classes), 1)):
      mine = [p for p, lab in zip(paths, labels) if lab == k]

      def images(mine=mine, k=k):
        for p in mine:
          if len(bad) > limit:
            return
          img, shape = _decode_one(os.path.join(root, p), opts, channels)
          if img is None:
            bad.append(p)
            continue
          shapes.add(shape)
          kept_labels.append(k)
          kept_files.append(p)
          yield {"image": img, "index": np.int64(len(kept_labels) - 1)}

      before = len(kept_labels)
      tf.data.Dataset.from_generator(images, output_signature=spec).save(
          os.path.join(tmp, f"class_{k}"), shard_func=lambda e: tf.constant(0, tf.int64))
      if len(bad) > limit:
        raise ConfigError(f"{what}: files in {root} do not decode (e.g. {bad[0]}): decoding"
                          f" stopped after {len(bad)} undecodable of the {len(paths)} image"
                          f" files, more than max_bad={opts.max_bad:g} allows")
      if len(kept_labels) == before:
        where = os.path.join(root, classes[k]) if classes else root
        raise ConfigError(f"{what}: no image in {where} decodes")
    with open(os.path.join(tmp, "meta.json"), "w") as f:
      json.dump({"labels": kept_labels, "files": kept_files, "channels": channels,
                 "size": opts.size, "classes": list(classes)}, f)
    try:
      os.replace(tmp, cache)
    except OSError:
      # Another process (or host, on a shared cache) decoded the same folder meanwhile:
      # its cache has the same key, so it is the same content; use it.
      if not os.path.isfile(os.path.join(cache, "meta.json")):
        raise
  finally:
    shutil.rmtree(tmp, ignore_errors=True)
  if bad:
    logging.warning("%s: skipped %d undecodable file(s) of %d in %s (e.g. %s)", what,
                    len(bad), len(paths), root, bad[0])
  if len(shapes) > 1:
    logging.info("%s: %d image sizes in %s (e.g. %s); all %s to %dx%d", what, len(shapes),
                 root, sorted(shapes)[:3], "resized" if opts.fit == "resize" else
                 "centre-cropped and resized", opts.size, opts.size)
  logging.info("%s: %d images of %s (%s) decoded to %dx%dx%d, cached in %s", what,
               len(kept_labels), root,
               f"classes {', '.join(classes)}" if classes else "unlabelled",
               opts.size, opts.size, channels, cache)


@dataclasses.dataclass(frozen=True)
class FolderStream:
  """A cached folder split read as tf.data streams, one per class, instead of arrays in
  memory. `ranges[k]` = (lo, hi) and `process_*`: which kept files (by index) of class k
  this host's slice holds, in the order the in-memory `select` gives them."""
  cache: str
  ranges: tuple
  process_index: int = 0
  process_count: int = 1
  shuffle_buffer: int = 4096

  def class_dataset(self, label: int, count: int, seed: int):
    """Class `label`'s images {'image': uint8, 'label': int32} ({count} of them on this
    host), reshuffled each pass (a buffer of min(count, shuffle_buffer) images; with the
    whole class in it this is the in-memory stream, draw for draw), repeated."""
    import tensorflow as tf
    (lo, hi), pi, pc = self.ranges[label], self.process_index, self.process_count

    def mine(e):
      i = e["index"]
      return (i >= lo) & (i < hi) & ((i - lo) % pc == pi)

    ds = tf.data.Dataset.load(os.path.join(self.cache, f"class_{label}")).filter(mine)
    ds = ds.map(lambda e: {"image": e["image"], "label": tf.constant(label, tf.int32)})
    ds = ds.shuffle(max(1, min(count, self.shuffle_buffer)), seed=seed,
                    reshuffle_each_iteration=True)
    return ds.repeat()


def load(directory: str, opts: FolderOptions, split: str, what: str):
  """(meta, images or None, class names) of a folder split (the whole split; the caller
  slices it), decoded once into the cache. `meta`: {'labels': int32 [N], 'files' (each
  image's path relative to the split root), 'channels', 'size', 'cache'}. Images are None
  when the split streams (`stream=yes`, or `auto` and more than STREAM_BYTES decoded);
  else uint8 [N, size, size, C] read from the cache."""
  root, paths, labels, classes = scan(directory, split.split("[")[0], opts, what)
  cache = _cache_dir(root, paths, opts)
  if not os.path.isfile(os.path.join(cache, "meta.json")):
    os.makedirs(os.path.dirname(cache), exist_ok=True)
    decode(root, paths, labels, classes, opts, what, cache)
  with open(os.path.join(cache, "meta.json")) as f:
    meta = json.load(f)
  meta = {**meta, "labels": np.asarray(meta["labels"], np.int32), "cache": cache}
  n, c = len(meta["labels"]), meta["channels"]
  stream = opts.stream == "yes" or (opts.stream == "auto"
                                    and n * opts.size ** 2 * c > STREAM_BYTES)
  if stream:
    return meta, None, classes
  import tensorflow as tf   # here, not above: a missing folder is refused in a second
  parts = [np.concatenate(list(tf.data.Dataset.load(os.path.join(cache, f"class_{k}"))
                               .map(lambda e: e["image"]).batch(1024).as_numpy_iterator()))
           for k in range(max(len(classes), 1))]
  return meta, np.concatenate(parts), classes


def fingerprint(directory: str, opts: FolderOptions, what: str) -> str:
  """A short key of a folder source's contents (both splits' file lists, sizes,
  modification times and the decoding options): what a cache built from the folder,
  such as an evaluation classifier's, must be keyed by."""
  keys = [os.path.basename(_cache_dir(*scan(directory, s, opts, what)[:2], opts))
          for s in ("train", "test")]
  return hashlib.sha256("|".join(keys).encode()).hexdigest()[:12]


def paired_names(a: str, b: str) -> int:
  """How many relative image paths two folders share (paired data, e.g. Edges and
  Shoes with the same file names), for the trainer's report."""
  def names(d):
    out = set()
    for dirpath, _, files in os.walk(d):
      out |= {os.path.relpath(os.path.join(dirpath, f), d) for f in files
              if f.lower().endswith(EXTENSIONS)}
    return out
  return len(names(a) & names(b))


def report_pairing(specs: dict) -> int:
  """Logs (and returns) how many file names two folder domains share: paired data."""
  dirs = [s.parsed.arg for s in specs.values() if s.parsed.is_folder]
  if len(dirs) != 2 or not all(os.path.isdir(d) for d in dirs):
    return 0
  n = paired_names(*dirs)
  if n:
    logging.info("folders %s and %s share %d image file names: paired data"
                 " (--pairing=same_draw draws them as pairs, by name)", dirs[0], dirs[1], n)
  return n
