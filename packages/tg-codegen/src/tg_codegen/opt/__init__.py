"""Choosing opt ops: the hand-written heuristic (default) and BEAM search."""
