"""Image-folder domains: `folder:<dir>[:key=value,...]`, your own data.

Layout (immediate subfolders of `<dir>`, or of `<dir>/train` and `<dir>/test`):

  <dir>/<class name>/*.png|jpg|jpeg     labelled: classes are the sorted subfolder names
  <dir>/*.png|jpg|jpeg                  unlabelled (one class, no label-based metrics)
  <dir>/train/..., <dir>/test/...       explicit splits (each laid out as above)

Without `train/` and `test/` subfolders the split is a deterministic hash of each file's
path relative to the split root: a file is in 'test' when crc32(path) / 2^32 <
`test_fraction` (default 0.1), else in 'train'; slices ('train[:90%]') work on either.

Options: `size` (side of the stored images, default 128; the domain's transform then
resizes to the model's resolution), `fit` ('resize': squash to a square, the default;
'crop': centre-crop the largest square, then resize), `test_fraction`, `max_bad`
(fraction of undecodable files skipped with a warning before the folder is refused,
default 0.05). Grey, RGB and RGBA files mix freely (alpha dropped; a folder holding any
colour image is stored as RGB, else grey); `--channels_*` converts at stream time.
Images are decoded and resized once with tf.image and cached as a compressed `.npz`
under `~/.cache/jdbw/folders` (or `$JDBW_CACHE`), keyed by the folder's file list,
sizes and modification times and the options: a changed folder is decoded again.
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
      kw[key] = value if key == "fit" else (int(value) if key == "size" else float(value))
    except ValueError:
      raise ConfigError(f"{what}: folder option {key}={value!r} is not a number") from None
  o = FolderOptions(**kw)
  if not directory:
    raise ConfigError(f"{what}: expected folder:<directory>, got {spec!r}")
  if o.fit not in FITS or o.size < 8 or not 0 <= o.test_fraction < 1 or not 0 <= o.max_bad < 1:
    raise ConfigError(f"{what}: folder options {o}: expected fit in {FITS}, size >= 8,"
                      " 0 <= test_fraction < 1, 0 <= max_bad < 1")
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
  root = os.path.join(directory, name) if explicit else directory
  classes = _subfolders(root)
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
    paths = [p for p, k in zip(paths, keep) if k]
    labels = [lab for lab, k in zip(labels, keep) if k]
    if not paths:
      raise ConfigError(f"{what}: the hash split leaves no images in {name!r} of {root}"
                        f" (test_fraction={opts.test_fraction}); add images or change it")
  return root, paths, np.asarray(labels, np.int32), tuple(classes)


def _cache_path(root, paths, opts) -> str:
  h = hashlib.sha256(json.dumps([os.path.abspath(root), dataclasses.asdict(opts)]).encode())
  for p in paths:
    st = os.stat(os.path.join(root, p))
    h.update(f"{p}|{st.st_size}|{st.st_mtime_ns}\n".encode())
  base = os.environ.get("JDBW_CACHE", os.path.join(os.path.expanduser("~"), ".cache", "jdbw"))
  return os.path.join(base, "folders", h.hexdigest()[:20] + ".npz")


def decode(root, paths, opts, what):
  """(uint8 images [N, size, size, C], kept indices); undecodable files skipped."""
  import tensorflow as tf
  out, kept, bad, shapes, colour = [], [], [], set(), False
  for i, p in enumerate(paths):
    try:
      img = tf.io.decode_image(tf.io.read_file(os.path.join(root, p)), expand_animations=False)
    except (tf.errors.InvalidArgumentError, tf.errors.NotFoundError):
      bad.append(p)
      continue
    shapes.add(tuple(img.shape[:2]))
    if img.shape[-1] == 4:
      img = img[..., :3]
    if img.shape[-1] == 2:   # grey + alpha
      img = img[..., :1]
    if opts.fit == "crop":
      h, w = img.shape[:2]
      s = min(h, w)
      img = img[(h - s) // 2:(h - s) // 2 + s, (w - s) // 2:(w - s) // 2 + s]
    img = tf.image.resize(tf.cast(img, tf.float32), (opts.size, opts.size), antialias=True)
    out.append(np.clip(np.rint(img.numpy()), 0, 255).astype(np.uint8))
    colour |= out[-1].shape[-1] == 3
    kept.append(i)
  if bad:
    if len(bad) > opts.max_bad * len(paths):
      raise ConfigError(f"{what}: {len(bad)} of {len(paths)} files in {root} do not decode"
                        f" (e.g. {bad[0]}); more than max_bad={opts.max_bad:g} of them")
    logging.warning("%s: skipped %d undecodable file(s) of %d in %s (e.g. %s)", what,
                    len(bad), len(paths), root, bad[0])
  if not out:
    raise ConfigError(f"{what}: no image in {root} decodes")
  if len(shapes) > 1:
    logging.info("%s: %d image sizes in %s (e.g. %s); all %s to %dx%d", what, len(shapes),
                 root, sorted(shapes)[:3], "resized" if opts.fit == "resize" else
                 "centre-cropped and resized", opts.size, opts.size)
  if colour:
    out = [np.repeat(a, 3, -1) if a.shape[-1] == 1 else a for a in out]
  return np.stack(out), np.asarray(kept)


def load(spec: str, split: str, what: str):
  """(uint8 images, int32 labels, class names) of a folder split (whole split; the
  caller slices it), decoded once and cached."""
  directory, opts = parse(spec, what)
  root, paths, labels, classes = scan(directory, split.split("[")[0], opts, what)
  cache = _cache_path(root, paths, opts)
  if os.path.isfile(cache):
    with np.load(cache) as z:
      return z["images"], z["labels"], classes
  images, kept = decode(root, paths, opts, what)
  labels = labels[kept]
  os.makedirs(os.path.dirname(cache), exist_ok=True)
  tmp = cache + f".tmp{os.getpid()}.npz"
  np.savez_compressed(tmp, images=images, labels=labels)
  os.replace(tmp, cache)
  logging.info("%s: %d images of %s (%s) decoded to %dx%dx%d, cached in %s", what,
               len(images), root, f"classes {', '.join(classes)}" if classes else "unlabelled",
               opts.size, opts.size, images.shape[-1], cache)
  return images, labels, classes


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
  dirs = [parse(s.source, s.flag("source"))[0] for s in specs.values()
          if s.source.startswith(NAME + ":")]
  if len(dirs) != 2 or not all(os.path.isdir(d) for d in dirs):
    return 0
  n = paired_names(*dirs)
  if n:
    logging.info("folders %s and %s share %d image file names: paired data (the methods"
                 " here train unpaired; the pairing is not used)", dirs[0], dirs[1], n)
  return n
