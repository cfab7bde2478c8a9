"""Level-based environments: the protocol (``envs.core``) and one folder per family."""

from envs.core import (
    EditSpec,
    Environment,
    Family,
    ReplayState,
    StepOut,
    families,
    get_family,
    register,
)

__all__ = [
    "EditSpec",
    "Environment",
    "Family",
    "ReplayState",
    "StepOut",
    "families",
    "get_family",
    "register",
]
