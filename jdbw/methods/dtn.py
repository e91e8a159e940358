"""DTN, the Domain Transfer Network (Taigman, Polyak & Wolf 2017), and DTN + batch weight.

One direction, X (source s) -> Y (target t): G = g ∘ f with f a *fixed* encoder and g a
decoder from f's embedding to Y images. A ternary discriminator D tells three kinds of
images apart: class 1 G(x_s), class 2 G(x_t), class 3 a real target image. The paper's
losses (its §3, written as mean cross-entropies CE(D(·), k) over the batch):

  L_D    = CE(D(G(x_s)), 1) + CE(D(G(x_t)), 2) + CE(D(x_t), 3)
  L_GANG = CE(D(G(x_s)), 3) + CE(D(G(x_t)), 3)
  L_G    = L_GANG + α L_CONST + β L_TID + γ L_TV
  L_CONST = mean ‖f(x_s) − f(G(x_s))‖²      (f-constancy: the embedding survives G)
  L_TID   = mean ‖x_t − G(x_t)‖²            (the target identity)
  L_TV    = the total variation of G(x_s)    (each pixel's gradient norm, B = 1)

with the paper's digit weights α = β = 15, γ = 0 (its faces: 100, 1, 0.05), squared
errors averaged over coordinates. Adam, one D step per G step (the shared iteration).

**f is the method's own supervision** and is made once, before training
(`pretrain`), into the state's 'F' part (no optimiser: f is never trained by the
run's losses), so a resumed run restores it and never refits it:

- `--dtn_f=classifier`: f is the embedding layer of a classifier trained on the
  *source* domain's training labels, read by `source_training_draws` alone, the one
  place in the project where a loss reads labels: X's `train` split (never `test`,
  never Y's labels), the domain as drawn. The paper's digit f is an SVHN classifier.
- `--dtn_f=autoencoder`: f is the encoder of an autoencoder trained on the source's
  training images, no labels (squared error through a decoder of g's shape).

The fitted f is cached under `<cache root>/dtn_f/` (`$JDBW_CACHE`, else
`~/.cache/jdbw`), keyed by the source, its classes, transform, channels, resolution and
the f settings, so the seeds and variants of a study share one f.

Batch weight (`--batch_weight=one_sided`, Algorithm 2; DTN is one-directional): ω =
softmax of W(x_s) over the batch weights every term on G(x_s) in the adversarial game,
D's class-1 term and G's L_GANG term on G(x_s); the terms on target images (G(x_t), x_t)
stay uniform, as does f-constancy (each source image keeps its content, whatever its
mode's mass). W minimises (Σ ω_i s(G(x_i)) − mean_j s(x_t,j))², s = D's log-odds of
"real target" (class 3 against 1 and 2), the scores held fixed.

f reads X's channels: Y images with another channel count are made grey or RGB for it
(`to_channels`). Networks (`jdbw.nets.dtn`, 32x32): f an `Encoder` without
normalisation (per sample), g a `Decoder`, D DistanceGAN's DCGAN discriminator with
three outputs; batch norm over the global batch in g and D.
"""

from __future__ import annotations

import dataclasses
import json
import os
import zlib

import jax
import jax.numpy as jnp
from jax.lax import stop_gradient as sg
import numpy as np
import optax
from absl import logging
from flax import serialization

from jdbw import losses, nets, parallel
from jdbw import config as config_lib
from jdbw.errors import ConfigError
from jdbw.methods import base
from jdbw.methods.cyclegan import Runner, l2_per_sample

F_MODES = ("classifier", "autoencoder")
# D's classes (0-based): G(source), G(target), a real target image.
FAKE_SOURCE, FAKE_TARGET, REAL = 0, 1, 2


def check_encoder_resolution(config) -> None:
  """One line unless --resolution fits `jdbw.nets.dtn`'s encoders and decoders (three
  halvings to a map that a valid convolution takes to 1x1): a multiple of 8, at least 32."""
  if config.resolution % 8 or config.resolution < 32:
    raise ConfigError(f"--resolution: got {config.resolution}; expected a multiple of 8,"
                      " at least 32")


@dataclasses.dataclass(frozen=True)
class FixedEncoderConfig:
  """The fixed encoder f (DTN's f, XGAN's teacher): its mode, shape and fitting."""
  dtn_f: str = config_lib.setting(
      "classifier",
      "How f is made before training: classifier (trained on the source's training labels,"
      " the only labels a loss reads) or autoencoder (the source's images alone).",
      choices=F_MODES)
  embed_dim: int = config_lib.setting(
      128, "Embedding size (DTN: f's output; XGAN: the shared embedding).")
  f_dim: int = config_lib.setting(64, "f's base width.")
  f_steps: int = config_lib.setting(2000, "Adam steps fitting f.")
  f_lr: float = config_lib.setting(1e-3, "f's Adam learning rate.")
  f_batch: int = config_lib.setting(128, "f's batch size.")
  f_draws: int = config_lib.setting(20000, "Training draws f is fitted on.")
  f_seed: int = config_lib.setting(0, "f's seed (the same f for every run seed).")

  def _check_fixed_encoder(self):
    check_encoder_resolution(self)
    config_lib.one_of(self, "dtn_f", F_MODES)
    config_lib.positive(self, "embed_dim", "f_dim", "f_steps", "f_batch", "f_draws")
    if self.f_lr <= 0 or self.f_seed < 0:
      raise ConfigError("--f_lr: expected > 0; --f_seed: expected >= 0")

  def f_settings(self) -> dict:
    return {f.name: getattr(self, f.name) for f in dataclasses.fields(FixedEncoderConfig)}


@dataclasses.dataclass(frozen=True)
class DTNConfig(FixedEncoderConfig, config_lib.MarginalTranslatorConfig):
  """DTN's settings: the paper's digit weights, networks sized for 32x32 on a CPU."""
  lr: float = 2e-4
  g_dim: int = 64   # help: DistanceGAN's field (one definition per setting)
  d_dim: int = 64
  const_weight: float = config_lib.setting(15.0, "α: f-constancy weight (paper, digits: 15).")
  tid_weight: float = config_lib.setting(
      15.0, "β: target identity weight (paper, digits: 15).")
  tv_weight: float = config_lib.setting(0.0, "γ: total variation weight (paper, digits: 0).")

  BATCH_WEIGHTS = ("none", "one_sided")

  def check(self):
    config_lib.positive(self, "g_dim", "d_dim")
    if min(self.const_weight, self.tid_weight, self.tv_weight) < 0:
      raise ConfigError("--const_weight, --tid_weight and --tv_weight: expected >= 0")


def tv_per_sample(images):
  """Per sample, the mean over pixels of ((∂_h z)² + (∂_w z)²)^½ (DTN's L_TV, B = 1)."""
  z = images.astype(jnp.float32)
  dh = z[:, 1:, :-1] - z[:, :-1, :-1]
  dw = z[:, :-1, 1:] - z[:, :-1, :-1]
  tv = jnp.sqrt(jnp.square(dh) + jnp.square(dw) + 1e-8)
  return tv.reshape(z.shape[0], -1).mean(-1)


def to_channels(images, channels: int):
  """Images in `channels` channels for f, which reads both domains: grey repeated to RGB,
  RGB averaged to grey (a public DTN's SVHN -> MNIST f takes MNIST as grey RGB)."""
  have = images.shape[-1]
  if have == channels:
    return images
  if have == 1:
    return jnp.repeat(images, channels, axis=-1)
  return jnp.mean(images, axis=-1, keepdims=True)


def ce_per_sample(logits, k: int):
  """Per sample, the cross-entropy of D's logits [B, 3] against class `k`."""
  labels = jnp.full(logits.shape[:1], k, jnp.int32)
  return optax.softmax_cross_entropy_with_integer_labels(logits.astype(jnp.float32), labels)


def real_log_odds(logits):
  """s = log p(real) − log (p(G(s)) + p(G(t))): D's score in batch weight's gap."""
  logits = logits.astype(jnp.float32)
  return logits[:, REAL] - jax.nn.logsumexp(logits[:, :REAL], axis=-1)


# --- f: fitted once, before training ---

def source_training_draws(spec, data_dir, n: int, seed: int, resolution: int,
                          with_labels: bool):
  """(images [n, r, r, c], labels [n] or None): `n` draws of the source domain's
  *training* split, as the domain draws them. The one function through which a loss
  reads labels (DTN's classifier f, XGAN's teacher): X's own `train` split only."""
  from jdbw import data
  if spec.name != "x":
    raise ConfigError(f"{spec.flag('source')}: f is fitted on the source domain X alone")
  domain = data.load_domain(dataclasses.replace(spec, split="train"), data_dir=data_dir)
  ds = data.domain_dataset(domain, seed=seed, resolution=resolution).batch(n)
  out = next(iter(ds.as_numpy_iterator()))
  return out["image"], (out["label"].astype(np.int32) if with_labels else None)


def f_module(c: FixedEncoderConfig, impl="auto", dtype=None):
  return nets.dtn.Encoder(dim=c.f_dim, norm="none", features=c.embed_dim, impl=impl,
                          dtype=dtype)


def fit_f(c, images, labels) -> tuple[dict, dict]:
  """(f's params, info): Adam on the classifier's cross-entropy (labels) or the
  autoencoder's squared error (labels None) over `images`, `c.f_steps` batches."""
  enc = f_module(c)
  r, ch = images.shape[1], images.shape[-1]
  num_classes = int(labels.max()) + 1 if labels is not None else 0
  head = (nets.layers.Dense(num_classes) if labels is not None else
          nets.dtn.Decoder(dim=c.f_dim, norm="none", resolution=r, out_channels=ch))
  k_enc, k_head = jax.random.split(jax.random.PRNGKey(c.f_seed))
  x0 = jnp.zeros((1, r, r, ch))
  params = {"f": enc.init(k_enc, x0)["params"],
            "head": head.init(k_head, jnp.zeros((1, c.embed_dim)))["params"]}
  tx = optax.adam(optax.cosine_decay_schedule(c.f_lr, c.f_steps))
  opt_state = tx.init(params)

  def loss_fn(p, x, y):
    e = enc.apply({"params": p["f"]}, x)
    if labels is None:
      return jnp.mean(jnp.square(head.apply({"params": p["head"]}, e) - x))
    logits = head.apply({"params": p["head"]}, jax.nn.relu(e))
    return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

  @jax.jit
  def step(p, o, x, y):
    loss, g = jax.value_and_grad(loss_fn)(p, x, y)
    updates, o = tx.update(g, o, p)
    return optax.apply_updates(p, updates), o, loss

  order = np.random.default_rng(c.f_seed)
  dummy = np.zeros((c.f_batch,), np.int32)
  for i in range(c.f_steps):
    idx = order.integers(0, len(images), c.f_batch)
    params, opt_state, loss = step(params, opt_state, images[idx],
                                   dummy if labels is None else labels[idx])
  info = {"mode": c.dtn_f, "final_loss": float(loss), "draws": int(len(images))}
  if labels is not None:   # accuracy on the draws it was fitted on (a sanity check)
    logits = head.apply({"params": params["head"]},
                        jax.nn.relu(enc.apply({"params": params["f"]}, images[:2000])))
    info["train_accuracy"] = float(np.mean(np.argmax(logits, -1) == labels[:2000]))
  return params["f"], info


def f_cache_path(spec, c, resolution: int) -> str:
  from jdbw import data
  fields = [spec.source, spec.classes, spec.transform, spec.channels, resolution,
            c.f_settings()]
  src = spec.parsed
  if src.is_folder:   # a changed folder fits a new f
    fields.append(data.folder.fingerprint(src.arg, src.folder, spec.flag("source")))
  key = zlib.crc32(json.dumps(fields).encode())
  return os.path.join(data.cache_root(), "dtn_f", f"{src.dataset_name}-{c.dtn_f}-{key:08x}")


def load_or_fit_f(spec, c, data_dir, resolution: int) -> dict:
  """f's params for source `spec`: from the cache, or fitted and cached."""
  from jdbw import workdir
  path = f_cache_path(spec, c, resolution)
  params_path, info_path = os.path.join(path, "params.msgpack"), os.path.join(path, "info.json")
  template = jax.eval_shape(f_module(c).init, jax.random.PRNGKey(0),
                            jnp.zeros((1, resolution, resolution, spec.channels)))["params"]
  if os.path.isfile(params_path) and os.path.isfile(info_path):
    with open(params_path, "rb") as fh:
      return serialization.from_bytes(template, fh.read())
  logging.info("fitting DTN's f (%s) on %s into %s", c.dtn_f, spec.source, path)
  images, labels = source_training_draws(spec, data_dir, c.f_draws, c.f_seed, resolution,
                                         with_labels=c.dtn_f == "classifier")
  params, info = fit_f(c, images, labels)
  logging.info("DTN's f: %s", info)
  os.makedirs(path, exist_ok=True)
  tmp = f"{params_path}.{os.getpid()}.tmp"   # two processes may fit the same one
  with open(tmp, "wb") as fh:
    fh.write(serialization.to_bytes(jax.device_get(params)))
  os.replace(tmp, params_path)
  workdir.write_json_atomic(info_path, {**info, "source": spec.source, "settings":
                                        c.f_settings(), "resolution": resolution}, indent=2)
  return params


class DTN(base.MarginalTranslator):
  """DTN; `batch_weight='one_sided'` is DTN + batch weight (Algorithm 2's W(x))."""

  name = "dtn"
  directions = ("xy",)
  unroll_d_steps = True
  stochastic = False     # z is ignored
  pretrains = True

  def module(self, part: str, name: str, axis_name=None):
    c = self.config
    if part == "F":
      return f_module(c, **self.kw)
    if part == "G":
      return nets.dtn.Decoder(dim=c.g_dim, resolution=c.resolution, out_channels=c.channels_y,
                              axis_name=axis_name, **self.kw)
    return nets.cyclegan.DCGANDiscriminator(dim=c.d_dim, outputs=3, axis_name=axis_name,
                                            **self.kw)

  def init_state(self, rng) -> base.TrainState:
    c = self.config
    x = jnp.zeros((2, *self.example_shape("x")))
    y = jnp.zeros((2, *self.example_shape("y")))
    state_key, net_key = jax.random.split(rng)
    keys = iter(jax.random.split(net_key, 8))
    params, spectral = base.empty_parts(), base.empty_parts()
    params["F"] = {"f": self.module("F", "f").init(next(keys), x)["params"]}
    e = jnp.zeros((2, c.embed_dim))
    for part, name, inp in (("G", "g", e), ("D", "D", y)):
      v = self.module(part, name).init(next(keys), inp)
      params[part][name], spectral[part][name] = v["params"], v["batch_stats"]
    params["W"], _ = self.bw.init(keys, x, y)
    opt_state = {k: self.tx[k].init(params[k]) for k in ("G", "D", "W")}
    return base.TrainState(step=jnp.zeros((), jnp.int32), rng=state_key, params=params,
                           spectral=spectral, opt_state=opt_state)

  def pretrain(self, state, specs, data_dir):
    f = load_or_fit_f(specs["x"], self.config, data_dir, self.config.resolution)
    return state.replace(params={**state.params, "F": {"f": f}})

  def embed(self, run, images):
    """f(images), grey images repeated to the source's channels (f reads the source)."""
    return run("F", "f", to_channels(images, self.config.channels_x))

  def translate(self, params, spectral, images, z, direction: str):
    del z, direction   # deterministic; one direction
    run = Runner(self, params, spectral, None, train=False)
    return run("G", "g", self.embed(run, images))

  # --- steps: (state, batch, rng) -> (state, metrics) ---

  def generator_step(self, state, batch, rng, axis_name=None):
    """L_GANG (its G(x_s) term weighted by ω) + α L_CONST + β L_TID + γ L_TV; W's gap."""
    del rng
    c = self.config
    x, y = batch["x"], batch["y"]
    parts = ("G",) + self.bw.parts("generator")
    mean = lambda v: losses.batch_mean(v, axis_name)

    def loss_fn(params):
      run = Runner(self, params, state.spectral, axis_name, train=True)
      fx_emb, fy_emb = self.embed(run, x), self.embed(run, y)
      gx, gy = run("G", "g", fx_emb), run("G", "g", fy_emb)
      w_x, _ = self.bw.weights(params["W"], x, sg(gx), None, y, state.step, axis_name)
      d_gx, d_gy = run("D", "D", gx), run("D", "D", gy)
      terms = {"adv": losses.weighted_sum(ce_per_sample(d_gx, REAL), sg(w_x), axis_name)
                      + mean(ce_per_sample(d_gy, REAL))}
      if c.const_weight:
        terms["const"] = c.const_weight * mean(l2_per_sample(self.embed(run, gx), fx_emb))
      if c.tid_weight:
        terms["tid"] = c.tid_weight * mean(l2_per_sample(gy, y))
      if c.tv_weight:
        terms["tv"] = c.tv_weight * mean(tv_per_sample(gx))
      loss = sum(terms.values())
      if "W" in parts:
        terms["w_loss"] = self.bw.marginal_w_loss(
            (real_log_odds(d_gx), w_x, real_log_odds(run("D", "D", y))), axis_name=axis_name)
        loss = loss + terms["w_loss"]
      return loss, (terms, w_x, run.spectral)

    state, _, (terms, w_x, spectral) = base.update(self.tx, state, parts, loss_fn, axis_name)
    m = parallel.global_size(x.shape[0], axis_name)
    return state.replace(spectral=spectral), (base.step_metrics("g", terms), {"w_x": w_x * m})

  def discriminator_step(self, state, batch, rng, axis_name=None):
    """L_D: the ternary cross-entropy, its G(x_s) term weighted by ω."""
    del rng
    x, y = batch["x"], batch["y"]
    run = Runner(self, state.params, state.spectral, axis_name, train=True)
    gx, gy = (sg(run("G", "g", self.embed(run, images))) for images in (x, y))
    w_x, _ = self.bw.weights(state.params["W"], x, gx, None, y, state.step, axis_name)
    w_x = sg(w_x)
    mean = lambda v: losses.batch_mean(v, axis_name)

    def loss_fn(params):
      d_run = Runner(self, params, run.spectral, axis_name, train=True)
      loss = (losses.weighted_sum(ce_per_sample(d_run("D", "D", gx), FAKE_SOURCE), w_x,
                                  axis_name)
              + mean(ce_per_sample(d_run("D", "D", gy), FAKE_TARGET))
              + mean(ce_per_sample(d_run("D", "D", y), REAL)))
      return loss, d_run.spectral

    state, loss, spectral = base.update(self.tx, state, ("D",), loss_fn, axis_name)
    return state.replace(spectral=spectral), {"d/loss": loss}

  def iteration(self, state, batch, axis_name=None):
    return base.run_iteration(self, state, batch, axis_name)
