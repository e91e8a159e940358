"""BalaGAN (Patashnik et al.; the seeds' imbalanced-domain translator; orpatashnik/BalaGAN).

The rich domain X (the paper's A) is split into k latent modalities without labels, and
one FUNIT-like conditional translator learns to move images between all k + 1 classes
(A_1 .. A_k and the poor domain Y = B, class k).

**Stage 1, the modalities** (`pretrain`, once on a fresh run, kept in the state's 'F'
part): a contrastive encoder (`jdbw.nets.balagan.ContrastiveEncoder`) trained with
SimCLR's NT-Xent (temperature 0.5) on two augmented views of images of both domains
(random resized crop, horizontal flip, brightness and contrast jitter: the paper's list
less colour and blur, which grey 32x32 images do not carry), then spherical k-means on
X's encoder features h (L2-normalised; scikit-learn's KMeans on the unit sphere, its
centres renormalised: the reference uses faiss's spherical k-means on the same
feature). An image's modality is its nearest centre by cosine, computed from the fixed
encoder in every step. The paper chooses k with |B| ≥ |A| / k (`--clusters`; a k below
the rule is reported in the log). Labels are never read.

**Stage 2, the translator** (FUNIT's losses and the reference's weights): G(a, b) decodes
the content of a with the class code of a reference b (`jdbw.nets.munit.AdaINGenerator`:
content encoder, class encoder, AdaIN MLP, decoder); D (`FUNITDiscriminator`) has a
hinge adversarial map per class, read at the reference's class, and a classification
head trained on real images only. With a = the source (class l_a), b = its reference
(class l_b):

  L_D = mean relu(1 − D(b)[l_b]) + mean relu(1 + D(G(a, b))[l_b]) + gan_w CE(C(b), l_b)
        + r1_w mean_b ‖∇_b mean D(b)[l_b]‖²
  L_G = gan_w ½ (−D(G(a, b))[l_b] − D(G(a, a))[l_a]) + rec_w |G(a, a) − a|₁
        + fm_w (|φ(G(a, a)) − φ(a)|₁ + |φ(G(a, b)) − φ(b)|₁)

φ = D's features averaged over positions (real ones held fixed); gan_w 1, rec_w 0.1,
fm_w 1, R1 10; RMSprop lr 1e-4 with weight decay 1e-4 for G and D; an exponential
moving average of G (0.999) translates at inference. Pairs: the reference loader's two
independent shuffles of A ∪ B become, per global batch index, a source of each domain
paired with a reference of the other domain (even indices) or of its own (odd), so the
(k + 1)² class pairs all occur and any device count draws the same pairs.

**Inference:** the harness's noise z = (selector, code): the translation of an image
takes the class code of a reference. A noise draw (every entry in (−1, 1)) picks one of
`bank_size` training images of the target domain kept in the state (a random B
reference when none is given: BalaGAN is stochastic through its references);
`encode_noise` reads a reference image's code and returns (2, code), which translate
uses as is (`--style_image`). So `--noise_dim` = 1 + the class code's size.

Where this differs from the reference: networks sized for 32x32 (2 content
down-samplings, 2 discriminator stages); R1 as the per-sample mean squared gradient
norm of the patch-mean score (the reference's `calc_grad2` divides the batch-mean's
gradient by B again, a batch-size-dependent scale); one compiled iteration (G step
first); the encoder is `jdbw.nets.dtn`'s DCGAN encoder, not a ResNet-18.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
from jax.lax import stop_gradient as sg
import numpy as np
import optax
from absl import logging

from jdbw import losses, nets, parallel
from jdbw import config as config_lib
from jdbw.errors import ConfigError
from jdbw.methods import base, dtn


@dataclasses.dataclass(frozen=True)
class BalaGANConfig(config_lib.MarginalTranslatorConfig):
  """BalaGAN's losses and optimiser (the reference's), networks sized for 32x32 on a CPU."""
  lr: float = 1e-4
  weight_decay: float = 1e-4
  noise_dim: int = 65          # 1 (the reference selector) + a class code of 64
  clusters: int = config_lib.setting(
      10, "BalaGAN k: modalities of X found by spherical k-means (paper: |B| >= |A|/k).")
  gen_dim: int = 32   # the reference: 64 (help: MUNIT's fields, one definition per setting)
  dis_dim: int = 32
  gan_w: float = 1.0
  rec_w: float = config_lib.setting(0.1, "BalaGAN image reconstruction weight.")
  fm_w: float = config_lib.setting(1.0, "BalaGAN feature matching weight.")
  r1_w: float = config_lib.setting(10.0, "BalaGAN R1 penalty weight.")
  contrast_dim: int = config_lib.setting(16, "BalaGAN contrastive encoder width.")
  contrast_features: int = config_lib.setting(64, "BalaGAN clustered feature size.")
  contrast_steps: int = config_lib.setting(1000, "BalaGAN NT-Xent Adam steps.")
  contrast_batch: int = config_lib.setting(128, "BalaGAN NT-Xent batch (pairs).")
  temperature: float = config_lib.setting(0.5, "BalaGAN NT-Xent temperature.")
  cluster_draws: int = config_lib.setting(
      5000, "BalaGAN: X training draws clustered (and draws per domain for NT-Xent).")
  bank_size: int = config_lib.setting(
      16, "BalaGAN: training images per domain kept as inference references.")

  BATCH_WEIGHTS = ("none",)

  def check(self):
    config_lib.positive(self, "clusters", "gen_dim", "dis_dim", "contrast_dim",
                        "contrast_features", "contrast_steps", "contrast_batch",
                        "cluster_draws", "bank_size")
    if self.noise_dim < 2:
      raise ConfigError(f"--noise_dim: got {self.noise_dim}; BalaGAN's noise is 1 selector +"
                        " the class code: expected >= 2")
    if self.channels_x != self.channels_y:
      raise ConfigError(f"--channels_y: BalaGAN's one translator moves images between all"
                        f" classes of both domains; got {self.channels_x} and"
                        f" {self.channels_y} channels")
    dtn.check_encoder_resolution(self)   # its contrastive encoder is nets.dtn's
    if self.temperature <= 0 or min(self.rec_w, self.fm_w, self.r1_w) < 0:
      raise ConfigError("--temperature: expected > 0; --rec_w, --fm_w, --r1_w: >= 0")
    if self.cluster_draws < self.bank_size:
      raise ConfigError(f"--cluster_draws: {self.cluster_draws} draws cannot fill"
                        f" --bank_size={self.bank_size} references")
    if self.cluster_draws < self.clusters:
      raise ConfigError(f"--cluster_draws: {self.cluster_draws} draws cannot make"
                        f" --clusters={self.clusters} modalities")


# --- stage 1: the modalities of the rich domain, without labels ---

def augment(key, images, strength: float = 1.0):
  """One random augmentation per image ([B, r, r, c] in [-1, 1]): a random resized crop
  (area 0.5-1, aspect 3/4-4/3), a horizontal flip, brightness/contrast jitter (±0.4)."""
  b, r = images.shape[0], images.shape[1]
  k_area, k_aspect, k_x, k_y, k_flip, k_b, k_c = jax.random.split(key, 7)
  area = jax.random.uniform(k_area, (b,), minval=0.5, maxval=1.0)
  ratio = jnp.exp(jax.random.uniform(k_aspect, (b,), minval=jnp.log(3 / 4),
                                     maxval=jnp.log(4 / 3)))
  w = jnp.clip(jnp.sqrt(area * ratio), 0.2, 1.0) * r
  h = jnp.clip(jnp.sqrt(area / ratio), 0.2, 1.0) * r
  ox = jax.random.uniform(k_x, (b,)) * (r - w)
  oy = jax.random.uniform(k_y, (b,)) * (r - h)

  def crop(img, oy, ox, h, w):
    scale = jnp.stack([r / h, r / w])
    return jax.image.scale_and_translate(img, img.shape, (0, 1), scale,
                                         -jnp.stack([oy, ox]) * scale, "linear")

  out = jax.vmap(crop)(images.astype(jnp.float32), oy, ox, h, w)
  out = jnp.where(jax.random.bernoulli(k_flip, 0.5, (b, 1, 1, 1)), out[:, :, ::-1], out)
  bright = jax.random.uniform(k_b, (b, 1, 1, 1), minval=-0.4, maxval=0.4) * strength
  contrast = 1 + jax.random.uniform(k_c, (b, 1, 1, 1), minval=-0.4, maxval=0.4) * strength
  mean = out.mean(axis=(1, 2, 3), keepdims=True)
  return jnp.clip((out - mean) * contrast + mean + bright, -1.0, 1.0)


def nt_xent(z1, z2, temperature: float):
  """SimCLR's NT-Xent over N positive pairs (z1_i, z2_i), cosine similarities: each of
  the 2N views against the other 2N − 1, the mean cross-entropy of finding its pair."""
  z = jnp.concatenate([z1, z2]).astype(jnp.float32)
  z = z / jnp.linalg.norm(z, axis=-1, keepdims=True).clip(1e-8)
  n = z1.shape[0]
  sim = jnp.where(jnp.eye(2 * n, dtype=bool), -1e9, z @ z.T / temperature)
  target = jnp.concatenate([jnp.arange(n, 2 * n), jnp.arange(n)])
  return optax.softmax_cross_entropy_with_integer_labels(sim, target).mean()


def encoder_module(c):
  return nets.balagan.ContrastiveEncoder(c.contrast_dim, c.contrast_features,
                                         c.contrast_features)


def fit_encoder(c, images, seed: int):
  """The contrastive encoder's params: `contrast_steps` Adam steps of NT-Xent on pairs of
  augmented views of random draws of `images` (both domains', unlabelled)."""
  enc = encoder_module(c)
  key = jax.random.PRNGKey(seed)
  params = enc.init(key, images[:2])["params"]
  tx = optax.adam(3e-4)
  opt = tx.init(params)

  @jax.jit
  def step(p, o, batch, k):
    k1, k2 = jax.random.split(k)

    def loss_fn(p):
      z1 = enc.apply({"params": p}, augment(k1, batch))[1]
      z2 = enc.apply({"params": p}, augment(k2, batch))[1]
      return nt_xent(z1, z2, c.temperature)
    loss, g = jax.value_and_grad(loss_fn)(p)
    u, o = tx.update(g, o, p)
    return optax.apply_updates(p, u), o, loss

  order = np.random.default_rng(seed)
  loss = jnp.nan
  for i in range(c.contrast_steps):
    idx = order.integers(0, len(images), c.contrast_batch)
    params, opt, loss = step(params, opt, images[idx], jax.random.fold_in(key, i + 1))
  return params, float(loss)


def unit(h):
  return h / jnp.linalg.norm(h, axis=-1, keepdims=True).clip(1e-8)


def spherical_kmeans(features, k: int, seed: int):
  """Unit-norm centres [k, F] of k-means on the L2-normalised `features` (scikit-learn's
  KMeans on the sphere, its centres renormalised: spherical k-means' assignment by
  cosine)."""
  from sklearn.cluster import KMeans
  f = np.asarray(unit(jnp.asarray(features)), np.float64)
  km = KMeans(k, n_init=4, random_state=seed).fit(f)
  return np.asarray(unit(jnp.asarray(km.cluster_centers_, jnp.float32)))


def draws(spec, data_dir, n: int, seed: int, resolution: int):
  """(`n` images of a domain's training split as the domain draws them, the split's
  size); no labels."""
  from jdbw import data
  domain = data.load_domain(dataclasses.replace(spec, split="train"), data_dir=data_dir)
  ds = data.domain_dataset(domain, seed=seed, resolution=resolution).batch(n)
  size = max(len(domain.data.images), len(domain.data.file_names))   # images, never labels
  return next(iter(ds.as_numpy_iterator()))["image"], size


class BalaGAN(base.MarginalTranslator):
  """BalaGAN: k modalities of X found without labels, one translator over k + 1 classes."""

  name = "balagan"
  directions = ("xy", "yx")
  unroll_d_steps = True
  encodes_style = True
  pretrains = True

  def __init__(self, config: BalaGANConfig):
    super().__init__(config)
    c = self.config
    rmsprop = lambda: optax.chain(optax.add_decayed_weights(c.weight_decay),
                                  optax.rmsprop(c.lr, decay=0.99, eps=1e-8, eps_in_sqrt=False))
    self.tx = {"G": rmsprop(), "D": rmsprop(), "W": optax.identity()}
    self.G = nets.munit.AdaINGenerator(
        out_channels=c.channels_y, dim=c.gen_dim, style_dim=c.noise_dim - 1, mlp_dim=4 * c.gen_dim,
        n_down=2, n_res=2, style_down=3, **self.kw)
    self.D = nets.balagan.FUNITDiscriminator(c.clusters + 1, c.dis_dim, 2, **self.kw)

  @property
  def weighted_sides(self) -> tuple[str, ...]:
    return ()

  def init_state(self, rng) -> base.TrainState:
    c = self.config
    x = jnp.zeros((2, *self.example_shape("x")))
    code = jnp.zeros((2, c.noise_dim - 1))
    state_key, net_key = jax.random.split(rng)
    k_g, k_d, k_e = jax.random.split(net_key, 3)
    g = self.G.init(k_g, x, code)["params"]
    params = {"G": {"G": g}, "D": {"D": self.D.init(k_d, x)["params"]}, "W": {},
              "EMA": {"G": jax.tree.map(jnp.copy, g)},   # its own buffers (donated)
              "F": {"encoder": encoder_module(c).init(k_e, x)["params"],
                    "centres": jnp.zeros((c.clusters, c.contrast_features)),
                    "bank_x": jnp.zeros((c.bank_size, *self.example_shape("x"))),
                    "bank_y": jnp.zeros((c.bank_size, *self.example_shape("y")))}}
    opt_state = {k: self.tx[k].init(params[k]) for k in ("G", "D", "W")}
    return base.TrainState(step=jnp.zeros((), jnp.int32), rng=state_key, params=params,
                           spectral=base.empty_parts(), opt_state=opt_state)

  def pretrain(self, state, specs, data_dir):
    """Stage 1: the contrastive encoder on both domains, k-means on X, the banks."""
    c = self.config
    seed = int(jax.device_get(jax.random.randint(state.rng, (), 0, 2 ** 30)))
    x, n_x = draws(specs["x"], data_dir, c.cluster_draws, seed, c.resolution)
    y, n_y = draws(specs["y"], data_dir, c.cluster_draws, seed + 1, c.resolution)
    if n_y < n_x / c.clusters:
      logging.warning("BalaGAN: --clusters=%d gives |A|/k = %d > |B| = %d (the paper asks"
                      " |B| >= |A|/k)", c.clusters, n_x // c.clusters, n_y)
    enc, loss = fit_encoder(c, np.concatenate([x, y]), seed)
    h = encoder_module(c).apply({"params": enc}, jnp.asarray(x), method="embed")
    centres = spherical_kmeans(h, c.clusters, seed)
    f = {"encoder": enc, "centres": jnp.asarray(centres),
         "bank_x": jnp.asarray(x[:c.bank_size]), "bank_y": jnp.asarray(y[:c.bank_size])}
    counts = np.bincount(np.asarray(self.modality(f, jnp.asarray(x))), minlength=c.clusters)
    logging.info("BalaGAN stage 1: NT-Xent %.4f; X draws per modality %s", loss,
                 counts.tolist())
    return state.replace(params={**state.params, "F": f})

  # --- classes ---

  def modality(self, f, images):
    """Each X image's modality: the nearest centre by cosine of its encoder feature."""
    h = encoder_module(self.config).apply({"params": f["encoder"]}, images, method="embed")
    return jnp.argmax(unit(h) @ f["centres"].T, axis=-1)

  def modalities(self, params, images):
    return self.modality(params["F"], images)

  def classes(self, params, images, side: str):
    k = self.config.clusters
    if side == "y":
      return jnp.full(images.shape[:1], k, jnp.int32)
    return sg(self.modality(params["F"], images)).astype(jnp.int32)

  # --- the translator ---

  def generate(self, g, content_images, code):
    content, _ = self.G.apply({"params": g}, content_images, method="encode")
    return self.G.apply({"params": g}, content, code, method="decode")

  def code(self, g, images):
    return self.G.apply({"params": g}, images, method="encode")[1]

  def translate(self, params, spectral, images, z, direction: str):
    """`images` in the class code of a reference of the target domain: one of the bank's
    picked by z's first entry, or (z[0] >= 1.5) the code z[1:] (`encode_noise`)."""
    del spectral
    g = params["EMA"]["G"]
    bank = params["F"][f"bank_{direction[1]}"]
    n = bank.shape[0]
    pick = jnp.clip(((z[:, 0] + 1) / 2 * n).astype(jnp.int32), 0, n - 1)
    code = jnp.where(z[:, :1] >= 1.5, z[:, 1:], self.code(g, bank[pick]))
    return self.generate(g, images, code)

  def encode_noise(self, params, spectral, images, direction: str):
    """The class code of reference `images` of the target domain, as (2, code)."""
    del spectral, direction
    code = self.code(params["EMA"]["G"], images)
    return jnp.concatenate([jnp.full((code.shape[0], 1), 2.0, code.dtype), code], -1)

  def pairs(self, params, batch, axis_name):
    """(sources, their classes, references, their classes) for this device: each global
    index's source of each domain with a reference of the other domain (even index) or
    of its own, the next index's (odd)."""
    x, y = batch["x"], batch["y"]
    n = x.shape[0]
    gx, gy = parallel.all_gather(x, axis_name), parallel.all_gather(y, axis_name)
    m = gx.shape[0]
    idx = base.global_index(n, axis_name)
    nxt = (idx + 1) % m
    even = (idx % 2 == 0)[:, None, None, None]
    ref_x = jnp.where(even, gy[idx], gx[nxt])
    ref_y = jnp.where(even, gx[idx], gy[nxt])
    lx, ly = self.classes(params, gx, "x"), self.classes(params, gy, "y")
    l_ref_x = jnp.where(even[:, 0, 0, 0], ly[idx], lx[nxt])
    l_ref_y = jnp.where(even[:, 0, 0, 0], lx[idx], ly[nxt])
    return (jnp.concatenate([x, y]), jnp.concatenate([lx[idx], ly[idx]]),
            jnp.concatenate([ref_x, ref_y]), jnp.concatenate([l_ref_x, l_ref_y]))

  def critic(self, d, images, labels):
    """(the adversarial map at each image's class [B, h, w], class logits, features)."""
    adv, cls, feat = self.D.apply({"params": d}, images)
    picked = jnp.take_along_axis(adv, labels[:, None, None, None], axis=-1)[..., 0]
    return picked, cls, feat

  # --- steps ---

  def generator_step(self, state, batch, rng, axis_name=None):
    del rng
    c = self.config
    a, la, b, lb = self.pairs(state.params, batch, axis_name)
    mean = lambda v: losses.batch_mean(v, axis_name)
    per = lambda v: v.reshape(v.shape[0], -1).astype(jnp.float32).mean(-1)
    d = state.params["D"]["D"]
    _, _, feat_a = self.critic(d, a, la)
    _, _, feat_b = self.critic(d, b, lb)

    def loss_fn(params):
      g = params["G"]["G"]
      fake_t = self.generate(g, a, self.code(g, b))
      fake_r = self.generate(g, a, self.code(g, a))
      adv_t, _, f_t = self.critic(d, fake_t, lb)
      adv_r, _, f_r = self.critic(d, fake_r, la)
      terms = {"adv": c.gan_w * 0.5 * (mean(-per(adv_t)) + mean(-per(adv_r))),
               "rec": c.rec_w * mean(per(jnp.abs(fake_r - a))),
               "fm": c.fm_w * (mean(per(jnp.abs(f_r - sg(feat_a))))
                               + mean(per(jnp.abs(f_t - sg(feat_b)))))}
      return sum(terms.values()), terms

    state, _, terms = base.update(self.tx, state, ("G",), loss_fn, axis_name)
    ema = optax.incremental_update(state.params["G"]["G"], state.params["EMA"]["G"], 0.001)
    state = state.replace(params={**state.params, "EMA": {"G": ema}})
    n = batch["x"].shape[0]   # no sample weights: uniform, as the paired methods report
    return state, (base.step_metrics("g", terms), {f"w_{s}": jnp.ones((n,)) for s in "xy"})

  def discriminator_step(self, state, batch, rng, axis_name=None):
    del rng
    c = self.config
    a, _, b, lb = self.pairs(state.params, batch, axis_name)
    g = state.params["G"]["G"]
    fake = sg(self.generate(g, a, self.code(g, b)))
    mean = lambda v: losses.batch_mean(v, axis_name)
    per = lambda v: v.reshape(v.shape[0], -1).astype(jnp.float32).mean(-1)

    def loss_fn(params):
      d = params["D"]["D"]

      def real_score(imgs):   # R1 differentiates the very forward that scores b
        adv, cls, _ = self.critic(d, imgs, lb)
        return per(adv), (adv, cls)

      real, pullback, (adv_real, cls_real) = jax.vjp(real_score, b, has_aux=True)
      (grad,) = pullback(jnp.ones_like(real))
      r1 = mean(jnp.sum(jnp.square(grad.astype(jnp.float32)).reshape(grad.shape[0], -1), -1))
      adv_fake, _, _ = self.critic(d, fake, lb)
      ce = optax.softmax_cross_entropy_with_integer_labels(cls_real, lb)
      terms = {"real": mean(per(jax.nn.relu(1 - adv_real))),
               "fake": mean(per(jax.nn.relu(1 + adv_fake))),
               "cls": c.gan_w * mean(ce), "r1": c.r1_w * r1}
      return sum(terms.values()), terms

    state, loss, terms = base.update(self.tx, state, ("D",), loss_fn, axis_name)
    return state, {"d/loss": loss, **{f"d/{k}": v for k, v in terms.items()}}

  def iteration(self, state, batch, axis_name=None):
    return base.run_iteration(self, state, batch, axis_name)
