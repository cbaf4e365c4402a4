"""The runtime interfaces every device implements: renderer, compiler, program, allocator, buffer, device base."""
from tg_uop.runtime.renderer import Renderer
from tg_uop.runtime.compiler import Compiler, CompileError
from tg_uop.runtime.program import Program, check_launch_dims
from tg_uop.runtime.allocator import Allocator, LRUAllocator, BufferSpec
from tg_uop.runtime.buffer import Buffer
from tg_uop.runtime.graph import GraphRunner, Launch
from tg_uop.runtime.compiled import Compiled

__all__ = ["Renderer", "Compiler", "CompileError", "Program", "check_launch_dims", "Allocator", "LRUAllocator", "BufferSpec", "Buffer",
           "GraphRunner", "Launch", "Compiled"]
