"""tg demo: train a small CNN on scikit-learn's handwritten digits (8x8 images, 10 classes) on the default device (the CPU unless
DEV says otherwise), with a progress line per epoch, then report test accuracy, time, kernels run and device.

Run it with `nox -s demo` (or `python examples/demo.py` with tg and scikit-learn installed)."""
import sys, time
import numpy as np
from tg_tensor import Tensor, Device, engine
from tg_tensor import nn
from tg_tensor.nn import optim
from tg_tensor.nn.state import get_parameters
from tg_tensor.jit import TinyJit

EPOCHS, BS, TARGET = 8, 100, 0.97

class DigitsCNN:
  """conv(1->16) bn relu pool -> conv(16->32) bn relu pool -> linear(128->10)."""
  def __init__(self):
    self.c1, self.bn1 = nn.Conv2d(1, 16, 3, padding=1), nn.BatchNorm2d(16)
    self.c2, self.bn2 = nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32)
    self.fc = nn.Linear(32 * 2 * 2, 10)
  def __call__(self, x: Tensor) -> Tensor:
    x = self.bn1(self.c1(x)).relu().max_pool2d(2)
    x = self.bn2(self.c2(x)).relu().max_pool2d(2)
    return self.fc(x.flatten(1))

def load_data(seed: int = 0):
  """Digits scaled to [0, 1] as (N, 1, 8, 8) float32, split 80/20 into train and test."""
  try: from sklearn.datasets import load_digits
  except ImportError: raise SystemExit("the demo needs scikit-learn for its dataset: pip install scikit-learn") from None
  d = load_digits()
  x, y = (d.images / 16.0).astype(np.float32)[:, None], d.target.astype(np.int32)
  perm = np.random.default_rng(seed).permutation(len(x))
  x, y = x[perm], y[perm]
  n = int(len(x) * 0.8)
  return x[:n], y[:n], x[n:], y[n:]

def main() -> None:
  start = time.perf_counter()
  xtr, ytr, xte, yte = load_data()
  print(f"tg demo: a small CNN on sklearn digits ({len(xtr)} train / {len(xte)} test images, 8x8) on device {Device.DEFAULT}")
  Tensor.manual_seed(0)
  model = DigitsCNN()
  opt = optim.Adam(get_parameters(model), lr=3e-3)
  sched = optim.CosineAnnealingLR(opt, T_max=EPOCHS, eta_min=3e-4)

  @TinyJit
  def train_step(x: Tensor, y: Tensor) -> Tensor:
    opt.zero_grad()
    loss = model(x).sparse_categorical_crossentropy(y)
    loss.backward()
    opt.step()
    return loss.realize()

  rng = np.random.default_rng(1)
  nb = len(xtr) // BS
  Tensor.training = True
  for epoch in range(EPOCHS):
    st, losses, perm = time.perf_counter(), [], rng.permutation(len(xtr))
    for b in range(nb):
      idx = perm[b * BS:(b + 1) * BS]
      losses.append(train_step(Tensor(xtr[idx]), Tensor(ytr[idx])))
      done = (b + 1) * 30 // nb
      sys.stdout.write(f"\repoch {epoch + 1}/{EPOCHS} [{'#' * done}{'.' * (30 - done)}] {(b + 1) * BS / (time.perf_counter() - st):7.0f} samples/s")
      sys.stdout.flush()
    loss = float(np.mean([x.item() for x in losses]))
    sched.step()
    print(f"\repoch {epoch + 1}/{EPOCHS} [{'#' * 30}] loss {loss:.4f}  {nb * BS / (time.perf_counter() - st):7.0f} samples/s  "
          f"lr {sched.get_last_lr():.2e}")
  Tensor.training = False
  acc = float((model(Tensor(xte)).argmax(1).numpy() == yte).mean())
  total = time.perf_counter() - start
  print(f"test accuracy {acc * 100:.2f}% ({len(xte)} images)  time {total:.1f} s  kernels run {engine.kernel_count}  device {Device.DEFAULT}")
  if acc < TARGET: raise SystemExit(f"test accuracy {acc * 100:.2f}% is below the {TARGET * 100:.0f}% target")

if __name__ == "__main__": main()
