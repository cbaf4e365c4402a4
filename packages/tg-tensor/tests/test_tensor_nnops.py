"""NN ops against PyTorch (CPU): convolutions, pooling, normalization, losses, attention, indexing writes, sorting, einsum,
unfold, interpolate, in-place operators and dropout — forward values, gradients, shapes and dtypes, plus kernel counts."""
import math
import numpy as np
import pytest
torch = pytest.importorskip("torch")
import torch.nn.functional as F
from tg_tensor import Tensor, dtypes
import tg_tensor.engine as engine

RNG = np.random.default_rng(0)
def rnd(*shape): return RNG.standard_normal(shape).astype(np.float32)

def close(t: Tensor, ref, atol=1e-4, rtol=1e-4):
  ref = ref.detach().numpy() if isinstance(ref, torch.Tensor) else np.asarray(ref)
  assert t.shape == ref.shape, (t.shape, ref.shape)
  np.testing.assert_allclose(t.numpy(), ref, atol=atol, rtol=rtol, equal_nan=True)

def grad_check(fn_tg, fn_torch, *arrays, atol=1e-4, rtol=1e-4, wrt=None):
  """fn(*tensors) matches torch in value, and the gradients of (out * r).sum() (r fixed random) match for every input in `wrt`."""
  wrt = range(len(arrays)) if wrt is None else wrt
  ts = [Tensor(a, requires_grad=(i in wrt)) for i, a in enumerate(arrays)]
  tt = [torch.tensor(a, requires_grad=(i in wrt)) for i, a in enumerate(arrays)]
  out, ref = fn_tg(*ts), fn_torch(*tt)
  r = rnd(*ref.shape)
  loss, tloss = (out * Tensor(r)).sum(), (ref * torch.tensor(r)).sum()
  loss.backward()
  tloss.backward()
  close(out, ref, atol, rtol)
  for i in wrt: close(ts[i].grad, tt[i].grad, atol * 10, rtol * 10)
  return out

def kernels_to_realize(t: Tensor) -> int:
  before = engine.kernel_count
  t.realize()
  return engine.kernel_count - before

# ---- convolutions ----
CONV2D = [
  dict(), dict(stride=2), dict(padding=1), dict(padding=(1, 2)), dict(dilation=2, padding=2), dict(stride=(2, 1), dilation=(1, 2)),
  dict(groups=2, padding=1), dict(padding="same", dilation=2), dict(stride=3, padding=2),
]
@pytest.mark.parametrize("kw", CONV2D, ids=[str(k) for k in CONV2D])
def test_conv2d_matches_torch(kw):
  g = kw.get("groups", 1)
  x, w, b = rnd(2, 4, 7, 6), rnd(6, 4 // g, 3, 3), rnd(6)
  pt = {k: v for k, v in kw.items() if k != "groups"}
  out = grad_check(lambda x, w, b: x.conv2d(w, b, groups=g, **pt), lambda x, w, b: F.conv2d(x, w, b, groups=g, **pt), x, w, b)
  assert out.dtype == dtypes.float32

def test_conv2d_flat_padding_is_pytorch_pad_order():
  x, w = rnd(1, 2, 5, 6), rnd(3, 2, 2, 3)
  close(Tensor(x).conv2d(Tensor(w), padding=(1, 0, 2, 1)), F.conv2d(F.pad(torch.tensor(x), (1, 0, 2, 1)), torch.tensor(w)))

@pytest.mark.parametrize("kw", [dict(), dict(stride=2, padding=1), dict(dilation=3, groups=3)])
def test_conv1d_matches_torch(kw):
  g = kw.get("groups", 1)
  x, w, b = rnd(2, 3, 11), rnd(6, 3 // g, 3), rnd(6)
  grad_check(lambda x, w, b: x.conv1d(w, b, **kw), lambda x, w, b: F.conv1d(x, w, b, **kw), x, w, b)

def test_conv3d_matches_torch():
  x, w = rnd(1, 2, 4, 5, 4), rnd(3, 2, 2, 3, 2)
  grad_check(lambda x, w: x.conv3d(w, stride=(1, 2, 1), padding=1), lambda x, w: F.conv3d(x, w, stride=(1, 2, 1), padding=1), x, w)

CONVT = [dict(), dict(stride=2), dict(stride=2, padding=1, output_padding=1), dict(dilation=2, padding=1), dict(groups=2, stride=(2, 3))]
@pytest.mark.parametrize("kw", CONVT, ids=[str(k) for k in CONVT])
def test_conv_transpose2d_matches_torch(kw):
  g = kw.get("groups", 1)
  x, w, b = rnd(2, 4, 4, 5), rnd(4, 6 // g, 3, 3), rnd(6)
  grad_check(lambda x, w, b: x.conv_transpose2d(w, b, **kw), lambda x, w, b: F.conv_transpose2d(x, w, b, **kw), x, w, b)

def test_conv_transpose1d_matches_torch():
  x, w = rnd(2, 3, 6), rnd(3, 2, 4)
  kw = dict(stride=3, padding=2, output_padding=1)
  grad_check(lambda x, w: x.conv_transpose1d(w, **kw), lambda x, w: F.conv_transpose1d(x, w, **kw), x, w)

def test_conv2d_forward_is_one_kernel_and_backward_few():
  x, w, b = Tensor(rnd(2, 4, 8, 8), requires_grad=True), Tensor(rnd(8, 4, 3, 3), requires_grad=True), Tensor(rnd(8), requires_grad=True)
  out = x.conv2d(w, b, padding=1)
  assert kernels_to_realize(Tensor(out.uop)) == 1
  assert kernels_to_realize(x.conv2d(w, stride=2, padding=1).relu()) == 1  # conv + relu fuse
  out.square().sum().backward()
  before = engine.kernel_count
  x.grad.realize(w.grad, b.grad)
  assert engine.kernel_count - before <= 4  # the conv output, then one reduction per gradient

def test_conv_errors_are_clear():
  with pytest.raises(ValueError, match="groups"): Tensor(rnd(1, 4, 5, 5)).conv2d(Tensor(rnd(2, 3, 3, 3)))
  with pytest.raises(ValueError, match="larger than"): Tensor(rnd(1, 1, 2, 2)).conv2d(Tensor(rnd(1, 1, 3, 3)))
  with pytest.raises(ValueError, match="same"): Tensor(rnd(1, 1, 5, 5)).conv2d(Tensor(rnd(1, 1, 3, 3)), stride=2, padding="same")

# ---- pooling ----
POOL = [dict(kernel_size=2), dict(kernel_size=3, stride=2), dict(kernel_size=3, stride=1, padding=1), dict(kernel_size=(2, 3), stride=(1, 2)),
        dict(kernel_size=3, stride=2, ceil_mode=True), dict(kernel_size=2, stride=2, padding=1, ceil_mode=True)]
@pytest.mark.parametrize("kw", POOL, ids=[str(k) for k in POOL])
def test_max_pool2d_matches_torch(kw):
  grad_check(lambda x: x.max_pool2d(**kw), lambda x: F.max_pool2d(x, **kw), rnd(2, 3, 7, 8))

def test_max_pool2d_dilation_and_indices_match_torch():
  x = rnd(1, 2, 9, 8)
  grad_check(lambda x: x.max_pool2d(3, 2, dilation=2, padding=1), lambda x: F.max_pool2d(x, 3, 2, dilation=2, padding=1), x)
  out, idx = Tensor(x).max_pool2d(3, 2, padding=1, return_indices=True)
  rout, ridx = F.max_pool2d(torch.tensor(x), 3, 2, padding=1, return_indices=True)
  close(out, rout)
  assert idx.dtype == dtypes.int64 and idx.numpy().tolist() == ridx.numpy().tolist()

@pytest.mark.parametrize("kw", POOL[2:] + [dict(kernel_size=3, stride=2, padding=1, ceil_mode=True, count_include_pad=False)],
                         ids=[str(k) for k in POOL[2:]] + ["no_pad_count_ceil"])
def test_avg_pool2d_matches_torch(kw):
  grad_check(lambda x: x.avg_pool2d(**kw), lambda x: F.avg_pool2d(x, **kw), rnd(2, 3, 7, 8))

def test_pool1d_match_torch():
  x = rnd(2, 3, 10)
  grad_check(lambda x: x.max_pool1d(3, 2, padding=1), lambda x: F.max_pool1d(x, 3, 2, padding=1), x)
  grad_check(lambda x: x.avg_pool1d(4, 3, ceil_mode=True), lambda x: F.avg_pool1d(x, 4, 3, ceil_mode=True), x)

@pytest.mark.parametrize("size", [1, (2, 3), (3, 5), (None, 2)])
def test_adaptive_avg_pool2d_matches_torch(size):
  grad_check(lambda x: x.adaptive_avg_pool2d(size), lambda x: F.adaptive_avg_pool2d(x, size), rnd(2, 3, 6, 7))

# ---- normalization ----
def test_layernorm_rmsnorm_batchnorm_match_torch():
  x = rnd(3, 4, 5)
  grad_check(lambda x: x.layernorm(), lambda x: F.layer_norm(x, (5,)), x)
  grad_check(lambda x: x.layernorm(axis=(-2, -1), eps=1e-3), lambda x: F.layer_norm(x, (4, 5), eps=1e-3), x)
  grad_check(lambda x: x.rms_norm(eps=1e-5), lambda x: F.rms_norm(x, (5,), eps=1e-5), x)
  w, b, m, v = rnd(4), rnd(4), rnd(4), np.abs(rnd(4)) + 0.5
  grad_check(lambda x, w, b: x.batchnorm(w, b, Tensor(m), (Tensor(v) + 1e-5).rsqrt()),
             lambda x, w, b: F.batch_norm(x, torch.tensor(m), torch.tensor(v), w, b, training=False, eps=1e-5), x, w, b)
  grad_check(lambda x: x.normalize(dim=-1), lambda x: F.normalize(x, dim=-1), x)

# ---- losses ----
def test_cross_entropy_matches_torch():
  logits, y = rnd(5, 4), np.array([0, 3, 1, 1, 2])
  for kw in [dict(), dict(label_smoothing=0.1), dict(reduction="sum"), dict(reduction="none")]:
    grad_check(lambda x: x.cross_entropy(Tensor(y), **kw), lambda x: F.cross_entropy(x, torch.tensor(y), **kw), logits)
  yi = np.array([0, 3, -100, 1, 2])
  w = np.array([1.0, 2.0, 0.5, 1.5], np.float32)
  kw = dict(weight=w, ignore_index=-100, label_smoothing=0.2)
  grad_check(lambda x: x.cross_entropy(Tensor(yi), weight=Tensor(w), ignore_index=-100, label_smoothing=0.2),
             lambda x: F.cross_entropy(x, torch.tensor(yi), weight=torch.tensor(w), ignore_index=-100, label_smoothing=0.2), logits)
  probs = np.abs(rnd(5, 4)); probs /= probs.sum(1, keepdims=True)
  grad_check(lambda x: x.cross_entropy(Tensor(probs), label_smoothing=0.1),
             lambda x: F.cross_entropy(x, torch.tensor(probs), label_smoothing=0.1), logits)
  # spatial targets: classes on axis 1
  grad_check(lambda x: x.cross_entropy(Tensor(np.array([[0, 2, 1], [2, 2, 0]]))),
             lambda x: F.cross_entropy(x, torch.tensor([[0, 2, 1], [2, 2, 0]])), rnd(2, 3, 3))

def test_nll_and_sparse_categorical_crossentropy_match_torch():
  logits, y = rnd(6, 5), np.array([4, 0, 1, 1, 3, 2])
  lp = torch.log_softmax(torch.tensor(logits), 1).numpy()
  grad_check(lambda x: x.nll_loss(Tensor(y)), lambda x: F.nll_loss(x, torch.tensor(y)), lp)
  w = np.abs(rnd(5)) + 0.1
  grad_check(lambda x: x.nll_loss(Tensor(y), weight=Tensor(w), reduction="sum"),
             lambda x: F.nll_loss(x, torch.tensor(y), weight=torch.tensor(w), reduction="sum"), lp)
  y2 = np.array([4, -1, 1, 1, -1, 2])
  grad_check(lambda x: x.sparse_categorical_crossentropy(Tensor(y2), label_smoothing=0.1),
             lambda x: F.cross_entropy(x, torch.tensor(y2), ignore_index=-1, label_smoothing=0.1), logits)

def test_binary_losses_and_mse_match_torch():
  p, y = 1 / (1 + np.exp(-rnd(4, 3))), (RNG.random((4, 3)) > 0.5).astype(np.float32)
  grad_check(lambda p: p.binary_crossentropy(Tensor(y)), lambda p: F.binary_cross_entropy(p, torch.tensor(y)), p.astype(np.float32))
  z = rnd(4, 3) * 30  # large logits must not overflow
  grad_check(lambda z: z.binary_crossentropy_logits(Tensor(y)), lambda z: F.binary_cross_entropy_with_logits(z, torch.tensor(y)), z)
  pw = np.array([1.0, 2.0, 0.5], np.float32)
  grad_check(lambda z: z.binary_crossentropy_logits(Tensor(y), reduction="sum", pos_weight=Tensor(pw)),
             lambda z: F.binary_cross_entropy_with_logits(z, torch.tensor(y), reduction="sum", pos_weight=torch.tensor(pw)), z)
  a, b = rnd(4, 3), rnd(4, 3)
  grad_check(lambda a, b: (a - b).square().mean(), lambda a, b: F.mse_loss(a, b), a, b)
  grad_check(lambda a, b: a.mse_loss(b, reduction="sum") + a.l1_loss(b), lambda a, b: F.mse_loss(a, b, reduction="sum") + F.l1_loss(a, b), a, b)

def test_one_hot_matches_torch():
  y = np.array([[0, 2], [3, 1]])
  t = Tensor(y).one_hot(4)
  assert t.dtype == dtypes.int64 and t.numpy().tolist() == F.one_hot(torch.tensor(y), 4).numpy().tolist()
  assert Tensor(y).one_hot().shape == (2, 2, 4)

# ---- attention ----
def test_scaled_dot_product_attention_matches_torch():
  q, k, v = rnd(2, 3, 4, 8), rnd(2, 3, 5, 8), rnd(2, 3, 5, 8)
  sdpa = F.scaled_dot_product_attention
  grad_check(lambda q, k, v: q.scaled_dot_product_attention(k, v, is_causal=True), lambda q, k, v: sdpa(q, k, v, is_causal=True), q, k, v)
  Q, K, V, tq, tk, tv = Tensor(q), Tensor(k), Tensor(v), torch.tensor(q), torch.tensor(k), torch.tensor(v)
  close(Q.scaled_dot_product_attention(K, V), sdpa(tq, tk, tv))
  bm, fm = RNG.random((4, 5)) > 0.3, rnd(4, 5)
  bm[:, 0] = True
  close(Q.scaled_dot_product_attention(K, V, attn_mask=Tensor(bm)), sdpa(tq, tk, tv, attn_mask=torch.tensor(bm)))
  close(Q.scaled_dot_product_attention(K, V, attn_mask=Tensor(fm), scale=0.3), sdpa(tq, tk, tv, attn_mask=torch.tensor(fm), scale=0.3))
  k1, v1 = rnd(2, 1, 5, 8), rnd(2, 1, 5, 8)
  close(Q.scaled_dot_product_attention(Tensor(k1), Tensor(v1), enable_gqa=True), sdpa(tq, torch.tensor(k1), torch.tensor(v1), enable_gqa=True))

# ---- indexing writes ----
@pytest.mark.parametrize("idx", [0, -1, (1, 2), (slice(None), 1), (slice(1, None, 2),), (Ellipsis, slice(None, None, -2)),
                                 (slice(0, 3), None, slice(1, 4, 2)), (slice(2, 2),)])
def test_setitem_basic_matches_numpy(idx):
  a = rnd(4, 5)
  t, r = Tensor(a), a.copy()
  shape = r[idx].shape
  v = rnd(*shape[-1:]) if shape and shape[-1] else np.float32(7.5)
  t[idx] = Tensor(v) if isinstance(v, np.ndarray) else float(v)
  r[idx] = v
  close(t, r, 0, 0)

def test_setitem_tensor_and_mask_indices_match_torch():
  a = rnd(4, 5)
  t, r = Tensor(a), torch.tensor(a)
  t[Tensor([0, 2]), 1:3] = 9.0
  r[torch.tensor([0, 2]), 1:3] = 9.0
  t[Tensor([3, -1]), Tensor([0, 4])] = Tensor([1.0, 2.0])
  r[torch.tensor([3, -1]), torch.tensor([0, 4])] = torch.tensor([1.0, 2.0])
  close(t, r, 0, 0)
  m = a > 0.5
  t[Tensor(m)] = 0.0
  r[torch.tensor(m)] = 0.0
  close(t, r, 0, 0)
  m2 = a < -0.5
  vals = np.arange(m2.sum(), dtype=np.float32)
  t[Tensor(m2)] = Tensor(vals)
  r[torch.tensor(m2)] = torch.tensor(vals)
  close(t, r, 0, 0)
  i = Tensor(np.arange(6, dtype=np.int32))
  i[1:4] = 0
  assert i.dtype == dtypes.int32 and i.tolist() == [0, 0, 0, 0, 4, 5]

def test_setitem_reads_itself_and_errors():
  t = Tensor(np.arange(6, dtype=np.float32))
  t[1:] = t[:-1]
  assert t.tolist() == [0, 0, 1, 2, 3, 4]
  with pytest.raises(ValueError, match="can't assign"): t[0:2] = Tensor([1.0, 2.0, 3.0])

@pytest.mark.filterwarnings("ignore:The reduce argument")
def test_scatter_and_scatter_reduce_match_torch():
  a, src = rnd(3, 5), rnd(2, 5)
  idx = np.array([[0, 1, 2, 0, 1], [2, 0, 1, 1, 0]])
  ti, ri = Tensor(idx), torch.tensor(idx)
  grad_check(lambda a, s: a.scatter(0, ti, s), lambda a, s: a.scatter(0, ri, s), a, src)
  close(Tensor(a).scatter(0, ti, 2.5), torch.tensor(a).scatter(0, ri, 2.5))
  idx1 = np.array([[0, 0, 3], [4, 1, 1], [2, 2, 2]])
  close(Tensor(a).scatter(1, Tensor(idx1), Tensor(src[:, :4].repeat(2, 0)[:3]), reduce="add"),
        torch.tensor(a).scatter(1, torch.tensor(idx1), torch.tensor(src[:, :4].repeat(2, 0)[:3]), reduce="add"))
  for red in ["sum", "prod", "mean", "amax", "amin"]:
    for inc in [True, False]:
      close(Tensor(a).scatter_reduce(0, ti, Tensor(src), red, include_self=inc),
            torch.tensor(a).scatter_reduce(0, ri, torch.tensor(src), red, include_self=inc), 1e-5, 1e-5)

def test_masked_select_matches_torch():
  a = rnd(3, 4)
  close(Tensor(a).masked_select(Tensor(a > 0)), torch.tensor(a).masked_select(torch.tensor(a > 0)))

# ---- sort, topk, einsum, unfold, interpolate ----
def test_sort_argsort_topk_match_torch():
  a = rnd(3, 7)
  for desc in [False, True]:
    v, i = Tensor(a).sort(-1, descending=desc)
    rv, ri = torch.tensor(a).sort(-1, descending=desc)
    close(v, rv, 0, 0)
    assert i.dtype == dtypes.int64 and i.numpy().tolist() == ri.numpy().tolist()
  grad_check(lambda x: x.sort(0)[0], lambda x: x.sort(0)[0], a)
  grad_check(lambda x: x.topk(3)[0], lambda x: x.topk(3)[0], a)
  v, i = Tensor(a).topk(2, dim=0, largest=False)
  rv, ri = torch.tensor(a).topk(2, dim=0, largest=False)
  close(v, rv, 0, 0)
  assert i.numpy().tolist() == ri.numpy().tolist()
  assert Tensor(a).argsort(1, descending=True).numpy().tolist() == torch.tensor(a).argsort(1, descending=True).numpy().tolist()

def test_sort_is_stable_and_puts_nan_last():
  x = [3.0, math.nan, 1.0, 3.0, -math.inf, 1.0, math.inf]
  v, i = Tensor(x).sort()
  rv, ri = torch.tensor(x).sort(stable=True)
  close(v, rv, 0, 0)
  assert i.tolist() == ri.tolist()
  vi, ii = Tensor([3, 1, 2, 1], dtype=dtypes.int32).sort(descending=True)
  assert vi.dtype == dtypes.int32 and vi.tolist() == [3, 2, 1, 1] and ii.tolist() == [0, 2, 1, 3]

@pytest.mark.parametrize("eq,shapes", [("ij,jk->ik", [(3, 4), (4, 5)]), ("bij,bjk->bik", [(2, 3, 4), (2, 4, 2)]), ("i,j->ij", [(3,), (4,)]),
                                       ("ii->i", [(4, 4)]), ("ii", [(3, 3)]), ("ij->", [(3, 4)]),
                                       ("...ij,...jk", [(2, 3, 4), (4, 5)]), ("bhqd,bhkd->bhqk", [(1, 2, 3, 4), (1, 2, 5, 4)]),
                                       ("ijk,jil->kl", [(2, 3, 4), (3, 2, 5)]), ("i,i,i->", [(5,), (5,), (5,)])])
def test_einsum_matches_torch(eq, shapes):
  arrays = [rnd(*s) for s in shapes]
  grad_check(lambda *ts: Tensor.einsum(eq, *ts), lambda *ts: torch.einsum(eq, *ts), *arrays)

def test_einsum_errors():
  with pytest.raises(ValueError, match="operands"): Tensor.einsum("ij,jk->ik", Tensor(rnd(2, 2)))
  with pytest.raises(ValueError, match="sizes"): Tensor.einsum("ij,jk->ik", Tensor(rnd(2, 3)), Tensor(rnd(2, 2)))

@pytest.mark.parametrize("dim,size,step", [(0, 2, 1), (1, 3, 2), (-1, 2, 3)])
def test_unfold_matches_torch(dim, size, step):
  grad_check(lambda x: x.unfold(dim, size, step), lambda x: x.unfold(dim, size, step), rnd(4, 5, 6))

@pytest.mark.parametrize("mode,size,ac", [("nearest", (6, 8), False), ("nearest", (5, 3), False), ("nearest-exact", (5, 7), False),
                                          ("bilinear", (7, 5), False), ("bilinear", (2, 9), True),
                                          ("bilinear", (3, 2), False)])
def test_interpolate_matches_torch(mode, size, ac):
  kw = dict(align_corners=ac) if mode == "bilinear" else {}
  grad_check(lambda x: x.interpolate(size, mode=mode, **kw), lambda x: F.interpolate(x, size, mode=mode, **kw), rnd(2, 2, 3, 4))

def test_interpolate_linear_1d_and_scale_factor():
  x = rnd(1, 2, 5)
  close(Tensor(x).interpolate((9,), mode="linear"), F.interpolate(torch.tensor(x), 9, mode="linear"))
  x2 = rnd(1, 1, 3, 4)
  close(Tensor(x2).interpolate(scale_factor=2, mode="nearest"), F.interpolate(torch.tensor(x2), scale_factor=2, mode="nearest"))

# ---- misc: tril/triu, repeat_interleave, linear ----
def test_tril_triu_repeat_interleave_linear():
  a = rnd(3, 4)
  for d in [-1, 0, 2]:
    close(Tensor(a).tril(d), torch.tensor(a).tril(d), 0, 0)
    close(Tensor(a).triu(d), torch.tensor(a).triu(d), 0, 0)
  close(Tensor(a).repeat_interleave(2, 1), torch.tensor(a).repeat_interleave(2, 1), 0, 0)
  close(Tensor(a).repeat_interleave(3), torch.tensor(a).repeat_interleave(3), 0, 0)
  w, b = rnd(4, 2), rnd(2)
  grad_check(lambda a, w, b: a.linear(w, b), lambda a, w, b: a @ w + b, a, w, b)

# ---- in-place operators and dropout ----
def test_inplace_operators_write_into_the_buffer():
  t = Tensor([1.0, 2.0, 3.0])
  alias = t
  t += 1
  t *= Tensor([2.0, 2.0, 0.5])
  t -= 1
  t /= 2
  assert alias is t and t.tolist() == [1.5, 2.5, 0.5]
  i = Tensor([5, 6], dtype=dtypes.int32)
  i //= 2
  i <<= 1
  assert i.dtype == dtypes.int32 and i.tolist() == [4, 6]

def test_dropout_follows_training_flag():
  x = Tensor.ones(64, 64)
  assert x.dropout(0.5) is x  # not training: identity
  Tensor.training = True
  try:
    Tensor.manual_seed(1)
    y = x.dropout(0.25).numpy()
    kept = y != 0
    assert 0.65 < kept.mean() < 0.85
    np.testing.assert_allclose(y[kept], 1 / 0.75, rtol=1e-6)
    assert (x.dropout(1.0).numpy() == 0).all()
    w = Tensor(rnd(8, 8), requires_grad=True)
    w.dropout(0.5).sum().backward()
    g = w.grad.numpy()
    assert set(np.unique(g).tolist()) <= {0.0, 2.0}
  finally: Tensor.training = False

def test_gradient_flows_through_a_realized_intermediate():
  x, w = rnd(1, 2, 5, 5), rnd(3, 2, 3, 3)
  X, W = Tensor(x, requires_grad=True), Tensor(w, requires_grad=True)
  y = X.conv2d(W).relu()
  y.realize()  # e.g. printed or inspected on the way
  (y * y).sum().backward()
  tx, tw = torch.tensor(x, requires_grad=True), torch.tensor(w, requires_grad=True)
  ty = F.conv2d(tx, tw).relu()
  (ty * ty).sum().backward()
  close(X.grad, tx.grad, 1e-3, 1e-3)
  close(W.grad, tw.grad, 1e-3, 1e-3)

def test_pool_norm_and_loss_kernel_counts():
  x = Tensor(rnd(2, 3, 8, 8)).realize()
  assert kernels_to_realize(x.max_pool2d(3, 2, padding=1)) == 1
  assert kernels_to_realize(x.avg_pool2d(3, 2, padding=1, ceil_mode=True, count_include_pad=False)) == 1
  assert kernels_to_realize(x.conv_transpose2d(Tensor(rnd(3, 4, 3, 3)).realize(), stride=2)) == 1
  assert kernels_to_realize(x.layernorm()) <= 3
  logits, y = Tensor(rnd(16, 10)).realize(), Tensor(RNG.integers(0, 10, 16)).realize()
  assert kernels_to_realize(logits.cross_entropy(y)) <= 3

def test_initializers_have_the_right_scale():
  Tensor.manual_seed(0)
  w = Tensor.kaiming_uniform(64, 32, a=math.sqrt(5)).numpy()
  b = math.sqrt(3.0) * math.sqrt(2.0 / 6) / math.sqrt(32)
  assert w.shape == (64, 32) and np.abs(w).max() <= b and np.abs(w).max() > 0.9 * b
  g = Tensor.glorot_uniform(16, 8).numpy()
  assert np.abs(g).max() <= math.sqrt(6 / 24)
  assert abs(Tensor.kaiming_normal(256, 64).numpy().std() - math.sqrt(2 / 1.0001) / 8) < 0.02
  assert Tensor.scaled_uniform(4, 4).numpy().max() <= 0.25
