"""Routing policies. Importing this package registers every built-in policy."""
from . import baselines, grouped, linear, neural, pooled, vw  # noqa: F401  (registration side effect)
from .base import POLICIES, ArmPolicy, Choice, Policy, PolicyParams, Score, make_policy, register

__all__ = ["POLICIES", "ArmPolicy", "Choice", "Policy", "PolicyParams", "Score", "make_policy", "register"]
