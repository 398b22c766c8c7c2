"""Parity maths for the build tool: the pure comparison lives in edge.parity, so
`pneumo-edge doctor` on the cart judges an engine exactly as its build did."""
from edge.parity import ParityResult, breaches, compare, dice, to_probability

__all__ = ["ParityResult", "breaches", "compare", "dice", "to_probability"]
