"""`Ops`: every operation a UOp can be, and `GroupOp`: named sets of them."""
from __future__ import annotations
from enum import Enum, auto

class FastEnum(Enum):
  # enums compare by identity; a stable order keeps toposort and hashing deterministic
  def __lt__(self, x: FastEnum) -> bool: return self.value < x.value
  def __repr__(self) -> str: return f"Ops.{self.name}"
  # members are singletons: identity hashing is exact and runs in C (Enum's own __hash__ is Python code, hot in rewrites)
  __hash__ = object.__hash__

class Ops(FastEnum):
  """Every operation. Tensor-level ops come first, then kernel-level, then ALU."""
  # graph structure
  SINK = auto(); NOOP = auto(); UNIQUE = auto(); DEVICE = auto(); KERNEL = auto(); LINEAR = auto()
  # tensor level: buffers and materialization
  BUFFER = auto(); BUFFER_VIEW = auto(); COPY = auto(); ASSIGN = auto(); CONTIGUOUS = auto(); DETACH = auto(); AFTER = auto()
  # tensor level: movement (arg holds the new shape / permutation / padding)
  RESHAPE = auto(); PERMUTE = auto(); EXPAND = auto(); PAD = auto(); SHRINK = auto(); FLIP = auto()
  # tensor level: reduction over axes (arg = (Ops.ADD, axes))
  REDUCE_AXIS = auto()
  # kernel level: definitions
  DEFINE_GLOBAL = auto(); DEFINE_LOCAL = auto(); DEFINE_REG = auto(); DEFINE_VAR = auto(); BIND = auto()
  SPECIAL = auto(); RANGE = auto(); END = auto(); REDUCE = auto()
  # kernel level: memory
  INDEX = auto(); LOAD = auto(); STORE = auto()
  # kernel level: values and vectors
  CONST = auto(); VCONST = auto(); VECTORIZE = auto(); GEP = auto(); CAST = auto(); BITCAST = auto()
  UNROLL = auto(); CONTRACT = auto()
  # kernel level: control flow and special instructions
  IF = auto(); ENDIF = auto(); BARRIER = auto(); WMMA = auto(); CUSTOM = auto()
  # ALU: unary
  EXP2 = auto(); LOG2 = auto(); SIN = auto(); SQRT = auto(); RECIP = auto(); NEG = auto(); TRUNC = auto()
  # ALU: binary
  ADD = auto(); MUL = auto(); SUB = auto(); FDIV = auto(); IDIV = auto(); MOD = auto(); MAX = auto(); POW = auto()
  SHL = auto(); SHR = auto(); AND = auto(); OR = auto(); XOR = auto(); CMPLT = auto(); CMPNE = auto(); CMPEQ = auto()
  THREEFRY = auto()
  # ALU: ternary
  WHERE = auto(); MULACC = auto()

class GroupOp:
  Unary = {Ops.EXP2, Ops.LOG2, Ops.SIN, Ops.SQRT, Ops.RECIP, Ops.NEG, Ops.TRUNC}
  Binary = {Ops.ADD, Ops.MUL, Ops.SUB, Ops.FDIV, Ops.IDIV, Ops.MOD, Ops.MAX, Ops.POW, Ops.SHL, Ops.SHR, Ops.AND, Ops.OR, Ops.XOR,
            Ops.CMPLT, Ops.CMPNE, Ops.CMPEQ, Ops.THREEFRY}
  Ternary = {Ops.WHERE, Ops.MULACC}
  ALU = Unary | Binary | Ternary
  Elementwise = ALU | {Ops.CAST, Ops.BITCAST}
  Movement = {Ops.RESHAPE, Ops.PERMUTE, Ops.EXPAND, Ops.PAD, Ops.SHRINK, Ops.FLIP}
  Buffer = {Ops.LOAD, Ops.STORE, Ops.CONST, Ops.DEFINE_VAR}
  Commutative = {Ops.ADD, Ops.MUL, Ops.MAX, Ops.CMPNE, Ops.CMPEQ, Ops.XOR, Ops.AND, Ops.OR}
  Associative = {Ops.ADD, Ops.MUL, Ops.AND, Ops.OR, Ops.MAX}
  Comparison = {Ops.CMPLT, Ops.CMPNE, Ops.CMPEQ}
  Idempotent = {Ops.OR, Ops.AND, Ops.MAX}
  # a*0 = 0 only holds where x is finite: float rules must not use this
  UnsafePad = {Ops.RECIP, Ops.LOG2, Ops.EXP2, Ops.IDIV, Ops.POW, Ops.FDIV}
  Defines = {Ops.DEFINE_GLOBAL, Ops.DEFINE_LOCAL, Ops.DEFINE_REG}
