"""Lowering passes: rewrites that bring a kernel graph down to what a renderer can render."""
