"""Model-level benchmark workloads, written once in the tinygrad-style API that tg-tensor follows (so the same function builds the
tg and the tinygrad version), plus the PyTorch version of the same math. Every framework starts from the same numpy weights, so
outputs and losses can be compared.

Each `build_*` returns `step`: `step()` runs one training step (returning its loss) or forward (returning the output), computed;
`to_numpy(out)` reads that result, for the comparison between frameworks."""
from __future__ import annotations
import math
import numpy as np

# ***** shared weights *****

def mlp_weights(seed: int = 0) -> dict[str, np.ndarray]:
  """784-512-10 MLP weights (PyTorch's Linear init: uniform in +-1/sqrt(fan_in)) and a batch of 128 inputs and labels."""
  rng = np.random.default_rng(seed)
  u = lambda shape, fan: rng.uniform(-1 / math.sqrt(fan), 1 / math.sqrt(fan), shape).astype(np.float32)  # noqa: E731
  return {"w1": u((512, 784), 784), "b1": u((512,), 784), "w2": u((10, 512), 512), "b2": u((10,), 512),
          "x": rng.standard_normal((128, 784), dtype=np.float32), "y": rng.integers(0, 10, 128).astype(np.int32)}

def cnn_weights(seed: int = 0) -> dict[str, np.ndarray]:
  """Conv(1->8, 3x3) relu Conv(8->16, 3x3) relu Linear(16*24*24 -> 10) weights and a batch of 32 28x28 images."""
  rng = np.random.default_rng(seed)
  u = lambda shape, fan: rng.uniform(-1 / math.sqrt(fan), 1 / math.sqrt(fan), shape).astype(np.float32)  # noqa: E731
  return {"c1": u((8, 1, 3, 3), 9), "c1b": u((8,), 9), "c2": u((16, 8, 3, 3), 72), "c2b": u((16,), 72),
          "w": u((10, 16 * 24 * 24), 16 * 24 * 24), "b": u((10,), 16 * 24 * 24),
          "x": rng.standard_normal((32, 1, 28, 28), dtype=np.float32), "y": rng.integers(0, 10, 32).astype(np.int32)}

def block_weights(seed: int = 0, b: int = 4, t: int = 128, d: int = 256, ff: int = 1024) -> dict[str, np.ndarray]:
  """A pre-norm transformer block's weights (linear weights stored (in, out)) and a (b, t, d) input."""
  rng = np.random.default_rng(seed)
  u = lambda shape, fan: rng.uniform(-1 / math.sqrt(fan), 1 / math.sqrt(fan), shape).astype(np.float32)  # noqa: E731
  return {"ln1_g": np.ones(d, np.float32), "ln1_b": np.zeros(d, np.float32), "wqkv": u((d, 3 * d), d), "bqkv": u((3 * d,), d),
          "wo": u((d, d), d), "bo": u((d,), d), "ln2_g": np.ones(d, np.float32), "ln2_b": np.zeros(d, np.float32),
          "w1": u((d, ff), d), "b1": u((ff,), d), "w2": u((ff, d), ff), "b2": u((d,), ff),
          "x": rng.standard_normal((b, t, d), dtype=np.float32)}

# ***** tinygrad-style (tg and tinygrad) *****

def _api(framework: str):
  """(Tensor, TinyJit, optim) of tg or tinygrad."""
  if framework == "tinygrad":
    from tinygrad import Tensor, TinyJit
    from tinygrad.nn import optim
    return Tensor, TinyJit, optim
  from tg_tensor import Tensor
  from tg_tensor.jit import TinyJit
  from tg_tensor.nn import optim
  return Tensor, TinyJit, optim

def _params(Tensor, ws: dict[str, np.ndarray], device: str, names: list[str]) -> dict:
  return {n: Tensor(ws[n], device=device).contiguous().realize() for n in names}

def _train_step(framework: str, device: str, jit: bool, forward, params: dict, x, y, opt):
  Tensor, TinyJit, _ = _api(framework)
  def step(x, y):
    opt.zero_grad()
    loss = forward(params, x).sparse_categorical_crossentropy(y).backward()
    # the loss is realized with the update, as tinygrad's examples do: realized after opt.step() it would read the new weights
    ts = opt.schedule_step()
    loss.realize(*ts)
    if framework == "tg":
      for t in ts: t._graph = None  # as tg's Optimizer.step(): a finished update graph must not be reused by the next step
    return loss
  f = TinyJit(step) if jit else step
  return lambda: f(x, y)

def _training(framework: str):
  """Turn training mode on (optimizers refuse to step without it)."""
  Tensor, _, _ = _api(framework)
  if framework == "tinygrad":
    from tinygrad.helpers import TRAINING
    TRAINING.value = 1
  Tensor.training = True

def mlp_forward(p: dict, x):
  """784-512-10 MLP."""
  return (x @ p["w1"].T + p["b1"]).relu() @ p["w2"].T + p["b2"]

def build_mlp(framework: str, device: str, jit: bool, ws: dict[str, np.ndarray] | None = None):
  """MLP 784-512-10, Adam(lr=1e-3), batch 128, cross-entropy: one training step per call."""
  Tensor, _, optim = _api(framework)
  ws = ws or mlp_weights()
  _training(framework)
  p = _params(Tensor, ws, device, ["w1", "b1", "w2", "b2"])
  x, y = Tensor(ws["x"], device=device).realize(), Tensor(ws["y"], device=device).realize()
  return _train_step(framework, device, jit, mlp_forward, p, x, y, optim.Adam(list(p.values()), lr=1e-3))

def cnn_forward(p: dict, x):
  """Conv(1->8, 3x3) relu Conv(8->16, 3x3) relu flatten Linear(9216 -> 10), through the framework's nn.Conv2d (as users write it:
  tg's layer picks its im2col lowering, which is faster on CPU than the fused window kernel of Tensor.conv2d)."""
  h = p["conv2"](p["conv1"](x).relu()).relu()
  return h.reshape(h.shape[0], -1) @ p["w"].T + p["b"]

def build_cnn(framework: str, device: str, jit: bool, ws: dict[str, np.ndarray] | None = None):
  """The small CNN, SGD(lr=0.01), batch 32 of 1x28x28: one training step per call."""
  Tensor, _, optim = _api(framework)
  nn = __import__("tinygrad.nn" if framework == "tinygrad" else "tg_tensor.nn", fromlist=["Conv2d"])
  ws = ws or cnn_weights()
  _training(framework)
  p = _params(Tensor, ws, device, ["c1", "c1b", "c2", "c2b", "w", "b"])
  p["conv1"], p["conv2"] = nn.Conv2d(1, 8, 3), nn.Conv2d(8, 16, 3)
  p["conv1"].weight, p["conv1"].bias, p["conv2"].weight, p["conv2"].bias = p["c1"], p["c1b"], p["c2"], p["c2b"]
  params = [p[n] for n in ("c1", "c1b", "c2", "c2b", "w", "b")]
  x, y = Tensor(ws["x"], device=device).realize(), Tensor(ws["y"], device=device).realize()
  return _train_step(framework, device, jit, cnn_forward, p, x, y, optim.SGD(params, lr=0.01))

def block_forward(p: dict, x, heads: int, gelu):
  """Pre-norm transformer block: x + attn(ln1(x)), then + mlp(ln2(x)) with gelu (tanh form)."""
  b, t, d = x.shape
  h = x.layernorm(eps=1e-5) * p["ln1_g"] + p["ln1_b"]
  qkv = h @ p["wqkv"] + p["bqkv"]
  q, k, v = [qkv[:, :, i * d:(i + 1) * d].reshape(b, t, heads, d // heads).transpose(1, 2) for i in range(3)]
  a = q.scaled_dot_product_attention(k, v).transpose(1, 2).reshape(b, t, d)
  x = x + (a @ p["wo"] + p["bo"])
  h = x.layernorm(eps=1e-5) * p["ln2_g"] + p["ln2_b"]
  return x + (gelu(h @ p["w1"] + p["b1"]) @ p["w2"] + p["b2"])

def build_block(framework: str, device: str, jit: bool, ws: dict[str, np.ndarray] | None = None, heads: int = 4):
  """Transformer block forward, 4x128x256, 4 heads, ffn 1024."""
  Tensor, TinyJit, _ = _api(framework)
  ws = ws or block_weights()
  p = {n: Tensor(a, device=device).contiguous().realize() for n, a in ws.items() if n != "x"}
  x = Tensor(ws["x"], device=device).realize()
  gelu = (lambda t: t.gelu()) if framework == "tinygrad" else (lambda t: t.gelu(approximate="tanh"))  # tinygrad's gelu is the tanh form
  def fwd(x): return block_forward(p, x, heads, gelu).realize()
  f = TinyJit(fwd) if jit else fwd
  return lambda: f(x)

def build_tiny_add(framework: str, device: str, jit: bool):
  """A 16-element add: launch and Python overhead alone."""
  Tensor, TinyJit, _ = _api(framework)
  a = Tensor(np.arange(16, dtype=np.float32), device=device).contiguous().realize()
  b = Tensor(np.ones(16, dtype=np.float32), device=device).contiguous().realize()
  def add(a, b): return (a + b).realize()
  f = TinyJit(add) if jit else add
  return lambda: f(a, b)

def to_numpy(out) -> np.ndarray:
  """A step's result (tg, tinygrad or PyTorch tensor) as a float32 numpy array."""
  return np.asarray(out.numpy(), dtype=np.float32)

# ***** PyTorch *****

def torch_mlp(torch, ws: dict[str, np.ndarray] | None = None):
  """The MLP step in PyTorch eager, same weights, Adam(lr=1e-3)."""
  ws = ws or mlp_weights()
  p = {n: torch.tensor(ws[n], requires_grad=True) for n in ("w1", "b1", "w2", "b2")}
  x, y = torch.tensor(ws["x"]), torch.tensor(ws["y"]).long()
  opt = torch.optim.Adam(list(p.values()), lr=1e-3)
  F = torch.nn.functional
  def step():
    opt.zero_grad()
    loss = F.cross_entropy(F.linear(F.relu(F.linear(x, p["w1"], p["b1"])), p["w2"], p["b2"]), y)
    loss.backward()
    opt.step()
    return loss.detach()
  return step

def torch_cnn(torch, ws: dict[str, np.ndarray] | None = None):
  """The CNN step in PyTorch eager, same weights, SGD(lr=0.01)."""
  ws = ws or cnn_weights()
  p = {n: torch.tensor(ws[n], requires_grad=True) for n in ("c1", "c1b", "c2", "c2b", "w", "b")}
  x, y = torch.tensor(ws["x"]), torch.tensor(ws["y"]).long()
  opt = torch.optim.SGD(list(p.values()), lr=0.01)
  F = torch.nn.functional
  def step():
    opt.zero_grad()
    h = F.relu(F.conv2d(F.relu(F.conv2d(x, p["c1"], p["c1b"])), p["c2"], p["c2b"]))
    loss = F.cross_entropy(F.linear(h.flatten(1), p["w"], p["b"]), y)
    loss.backward()
    opt.step()
    return loss.detach()
  return step

def torch_block(torch, ws: dict[str, np.ndarray] | None = None, heads: int = 4):
  """The transformer block forward in PyTorch eager (no grad), same weights."""
  ws = ws or block_weights()
  p = {n: torch.tensor(a) for n, a in ws.items()}
  F = torch.nn.functional
  x = p["x"]
  b, t, d = x.shape
  def fwd():
    with torch.no_grad():
      h = F.layer_norm(x, (d,), p["ln1_g"], p["ln1_b"], 1e-5)
      qkv = h @ p["wqkv"] + p["bqkv"]
      q, k, v = [qkv[:, :, i * d:(i + 1) * d].reshape(b, t, heads, d // heads).transpose(1, 2) for i in range(3)]
      a = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, t, d)
      y = x + (a @ p["wo"] + p["bo"])
      h = F.layer_norm(y, (d,), p["ln2_g"], p["ln2_b"], 1e-5)
      return y + (F.gelu(h @ p["w1"] + p["b1"], approximate="tanh") @ p["w2"] + p["b2"])
  return fwd

# ***** GPT-2-size forward graph, scheduled and lowered on NULL *****

def gpt2_schedule(layers: int = 12, dim: int = 768, heads: int = 12, seq: int = 1024, batch: int = 1, vocab: int = 50257,
                  device: str = "NULL") -> dict:
  """Build a GPT-2-shaped forward graph (token + position embedding, `layers` pre-norm blocks with causal attention, final norm,
  tied LM head) on `device` with unrealized weights, schedule it with `create_schedule` and lower every kernel with `get_program`
  for the device's renderer, running nothing. Returns the build, schedule and lowering seconds and the kernel count."""
  import time
  from tg_tensor import Tensor
  from tg_tensor.schedule import create_schedule
  from tg_codegen.program import get_program
  from tg_uop.device import Device
  st = time.perf_counter()
  E = lambda *s: Tensor.empty(*s, device=device)  # noqa: E731
  wte, wpe = E(vocab, dim), E(seq, dim)
  tok = Tensor(np.zeros((batch, seq), np.int32), device=device)
  x = wte[tok] + wpe[:seq]
  mask = Tensor.ones(seq, seq, device=device, dtype="bool").tril()
  for _ in range(layers):
    h = x.layernorm() * E(dim) + E(dim)
    qkv = h @ E(dim, 3 * dim) + E(3 * dim)
    q, k, v = [qkv[:, :, i * dim:(i + 1) * dim].reshape(batch, seq, heads, dim // heads).transpose(1, 2) for i in range(3)]
    a = q.scaled_dot_product_attention(k, v, attn_mask=mask).transpose(1, 2).reshape(batch, seq, dim)
    x = x + (a @ E(dim, dim) + E(dim))
    h = x.layernorm() * E(dim) + E(dim)
    x = x + ((h @ E(dim, 4 * dim) + E(4 * dim)).gelu(approximate="tanh") @ E(4 * dim, dim) + E(dim))
  logits = (x.layernorm() * E(dim) + E(dim)) @ wte.T
  t_build = time.perf_counter() - st
  st = time.perf_counter()
  items, _ = create_schedule([logits.uop], device)
  t_sched = time.perf_counter() - st
  kernels = [it for it in items if it.ast is not None]
  ren = Device[device].renderer
  st = time.perf_counter()
  for it in kernels: get_program(it.ast, ren, None, it.device)
  t_lower = time.perf_counter() - st
  return {"layers": layers, "build_s": t_build, "schedule_s": t_sched, "lower_s": t_lower, "kernels": len(kernels),
          "steps": len(items), "renderer": type(ren).__name__}
