r"""Eager PyTorch JD-BW iteration with the same networks, the reference of issue 8.

  pip install -r benchmarks/requirements.txt
  python benchmarks/torch_jd.py --batch_sizes=32,128 --d_steps=5 --repeats=20

Outside the package on purpose: jdbw never imports torch. Networks as jdbw.nets
(Tables 1-2 with spectral norm on G and D, DCGAN weight nets without it, LeakyReLU 0.2,
PyTorch padding conventions) and the same work per iteration as jdbw.methods.jd: one G/W
step (composite softmax weights, W on (L- - L+)^2) then d critic steps with the
gradient penalty at the training points of both pairs (double backward). Prints one
JSON line per batch size: median seconds per iteration over --repeats after warm-up.
"""

import argparse
import json
import platform
import statistics
import time

import torch
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm


def _sn(layer, on=True):
  return spectral_norm(layer) if on else layer


class ResBlock(nn.Module):
  def __init__(self, cin, cout, act):
    super().__init__()
    self.c1 = _sn(nn.Conv2d(cin, cout, 3, 1, 1))
    self.c2 = _sn(nn.Conv2d(cout, cout, 3, 1, 1))
    self.skip = _sn(nn.Conv2d(cin, cout, 1)) if cin != cout else nn.Identity()
    self.act = act

  def forward(self, x):
    return self.skip(x) + self.c2(self.act(self.c1(self.act(x))))


class Generator(nn.Module):
  """Table 2, MNIST-SRMNIST: K=4, s=2, width 64, noise 8."""

  def __init__(self, c=1, f=64, d=8):
    super().__init__()
    relu = nn.ReLU()
    self.inp = _sn(nn.Conv2d(c, f, 4, 2, 1))
    self.r1, self.r2 = ResBlock(f, f, relu), ResBlock(f, f, relu)
    self.x0 = _sn(nn.Conv2d(f, f, 1))
    self.mix = _sn(nn.Conv2d(f + d, f, 1))
    self.r3, self.r4 = ResBlock(f, f, relu), ResBlock(f, f, relu)
    self.out = _sn(nn.ConvTranspose2d(f, c, 4, 2, 1))

  def forward(self, x, z):
    h = self.r2(self.r1(self.inp(x)))
    h = self.x0(torch.relu(h))
    z0 = z[:, :, None, None].expand(-1, -1, h.shape[2], h.shape[3])
    h = self.r4(self.r3(self.mix(torch.cat([h, z0], 1))))
    return torch.tanh(self.out(torch.relu(h)))


class JointDiscriminator(nn.Module):
  """Table 1: three streams per level, 2 ResBlocks at level 2, conv(256), fc 1024-256-1."""

  def __init__(self, c=1, f=32):
    super().__init__()
    self.act = nn.LeakyReLU(0.2)
    self.x, self.y, self.xy = nn.ModuleList(), nn.ModuleList(), nn.ModuleList()
    cx, cxy = c, 2 * c
    for mult in (1, 2, 4):
      self.x.append(_sn(nn.Conv2d(cx, f * mult, 4, 2, 1)))
      self.y.append(_sn(nn.Conv2d(cx, f * mult, 4, 2, 1)))
      self.xy.append(_sn(nn.Conv2d(cxy, 2 * f * mult, 4, 2, 1)))
      cx, cxy = f * mult, 4 * f * mult
      if mult == 2:
        self.res = nn.Sequential(ResBlock(cxy, 4 * f, self.act), ResBlock(4 * f, 4 * f, self.act))
        cxy = 4 * f
    self.out = _sn(nn.Conv2d(cxy, 8 * f, 4, 2, 1))
    self.fc1 = _sn(nn.Linear(8 * f * 4, 8 * f))
    self.fc2 = _sn(nn.Linear(8 * f, 1))

  def forward(self, x, y):
    hx, hy, h = x, y, torch.cat([x, y], 1)
    for level in range(3):
      hx, hy = self.act(self.x[level](hx)), self.act(self.y[level](hy))
      h = torch.cat([hx, self.act(self.xy[level](h)), hy], 1)
      if level == 1:
        h = self.res(h)
    h = self.act(self.out(h)).flatten(1)
    return self.fc2(self.act(self.fc1(h)))[:, 0]


class WeightNet(nn.Module):
  """DCGAN critic body (64, 128, 256, 512) -> linear, no spectral norm."""

  def __init__(self, c=1, f=64):
    super().__init__()
    layers, cin = [], c
    for i in range(4):
      layers += [nn.Conv2d(cin, f * 2 ** i, 4, 2, 1), nn.LeakyReLU(0.2)]
      cin = f * 2 ** i
    self.body = nn.Sequential(*layers)
    self.fc = nn.Linear(cin * 4, 1)

  def forward(self, x):
    return self.fc(self.body(x).flatten(1))[:, 0]


def softmax_weights(a, t):
  """jdbw.batch_weight.softmax_weights: softmax of the centred, clipped logits."""
  return torch.softmax(torch.clamp(a - a.mean(), -t, t), 0)


def combined(logits, t):
  m = logits[0].shape[0]
  return 0.5 * (1.0 / m + sum(softmax_weights(a, t) for a in logits) / len(logits))


class JDBW:
  def __init__(self, device, lr=1e-4):
    self.G_xy, self.G_yx = Generator().to(device), Generator().to(device)
    self.D = JointDiscriminator().to(device)
    self.W_x, self.W_y = WeightNet().to(device), WeightNet().to(device)
    adam = lambda *nets: torch.optim.Adam([p for n in nets for p in n.parameters()], lr,
                                          betas=(0.5, 0.999))
    self.opt_g, self.opt_w, self.opt_d = (adam(self.G_xy, self.G_yx), adam(self.W_x, self.W_y),
                                          adam(self.D))
    self.device, self.t = device, 1.25

  def weights(self, x, fx, fy, y):
    a_x = [self.W_x(x), -self.W_y(fx)]
    a_y = [-self.W_x(fy), self.W_y(y)]
    return combined(a_x, self.t), combined(a_y, self.t)

  def generator_step(self, x, y):
    self.D.requires_grad_(False)
    zx = torch.rand(x.shape[0], 8, device=self.device) * 2 - 1
    zy = torch.rand(y.shape[0], 8, device=self.device) * 2 - 1
    fx, fy = self.G_xy(x, zx), self.G_yx(y, zy)
    d_minus, d_plus = self.D(x, fx), self.D(fy, y)
    w_x, w_y = self.weights(x, fx.detach(), fy.detach(), y)
    gap = (w_x.detach() * d_minus).sum() - (w_y.detach() * d_plus).sum()
    w_loss = ((w_x * d_minus.detach()).sum() - (w_y * d_plus.detach()).sum()) ** 2
    self.opt_g.zero_grad(set_to_none=True)
    self.opt_w.zero_grad(set_to_none=True)
    (gap + w_loss).backward()
    self.opt_g.step()
    self.opt_w.step()
    self.D.requires_grad_(True)
    return gap.detach()

  def discriminator_step(self, x, y, gp_weight=10.0):
    with torch.no_grad():
      zx = torch.rand(x.shape[0], 8, device=self.device) * 2 - 1
      zy = torch.rand(y.shape[0], 8, device=self.device) * 2 - 1
      fx, fy = self.G_xy(x, zx), self.G_yx(y, zy)
      w_x, w_y = self.weights(x, fx, fy, y)
    inputs = [t.detach().requires_grad_(True) for t in (x, fx, fy, y)]
    xi, fxi, fyi, yi = inputs
    d_minus, d_plus = self.D(xi, fxi), self.D(fyi, yi)
    gap = (w_x * d_minus).sum() - (w_y * d_plus).sum()
    # Roth et al.: squared input-gradient norm at the points of both pairs.
    grads = torch.autograd.grad(d_minus.sum() + d_plus.sum(), inputs, create_graph=True)
    sq = [g.pow(2).flatten(1).sum(1) for g in grads]
    gp = torch.cat([sq[0] + sq[1], sq[2] + sq[3]]).mean()
    self.opt_d.zero_grad(set_to_none=True)
    (-gap + gp_weight * gp).backward()
    self.opt_d.step()
    return gap.detach()

  def iteration(self, xs, ys):
    self.generator_step(xs[0], ys[0])
    for i in range(1, xs.shape[0]):
      self.discriminator_step(xs[i], ys[i])


def measure(batch, d_steps, repeats, device):
  torch.manual_seed(0)
  model = JDBW(device)
  xs = torch.rand(d_steps + 1, batch, 1, 32, 32, device=device) * 2 - 1
  ys = torch.rand(d_steps + 1, batch, 1, 32, 32, device=device) * 2 - 1
  sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
  for _ in range(2):  # Warm-up (allocator, oneDNN/cuDNN primitive caches).
    model.iteration(xs, ys)
  sync()
  times = []
  for _ in range(repeats):
    t = time.perf_counter()
    model.iteration(xs, ys)
    sync()
    times.append(time.perf_counter() - t)
  s = statistics.median(times)
  return {"impl": "pytorch-eager", "batch": batch, "d_steps": d_steps,
          "s_per_iteration": round(s, 4), "images_per_s": round(2 * (d_steps + 1) * batch / s, 1),
          "repeats": repeats}


def main():
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--batch_sizes", default="32,128")
  p.add_argument("--d_steps", type=int, default=5)
  p.add_argument("--repeats", type=int, default=20)
  p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
  args = p.parse_args()
  device = torch.device(args.device)
  print(json.dumps({"torch": torch.__version__, "device": str(device),
                    "threads": torch.get_num_threads(), "cpu": platform.processor()}))
  for b in args.batch_sizes.split(","):
    print(json.dumps(measure(int(b), args.d_steps, args.repeats, device)), flush=True)


if __name__ == "__main__":
  main()
