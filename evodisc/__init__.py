"""evodisc: discover optimization algorithms by evolving symbolic update rules.

The public API; the command line (``evodisc …``) is a thin layer over these functions.
"""

from evodisc.analysis import analyse, eliminate_dead_code, ignores_gradient
from evodisc.cache import CachedFitness, FitnessCache, fitness_config_key
from evodisc.export import to_torch_optimizer, torch_source
from evodisc.hashing import HashInfo, functional_hash, functional_hash_info
from evodisc.interpreter import compile_program, init_state, step
from evodisc.primitives import PRIMITIVES
from evodisc.program import (
    Program,
    ProgramError,
    format_program,
    load_program,
    parse_program,
    program_from_json,
    program_to_json,
)

__all__ = [
    "PRIMITIVES",
    "CachedFitness",
    "FitnessCache",
    "HashInfo",
    "Program",
    "ProgramError",
    "ReplayResult",
    "analyse",
    "compile_program",
    "eliminate_dead_code",
    "fitness_config_key",
    "format_program",
    "functional_hash",
    "functional_hash_info",
    "ignores_gradient",
    "init_state",
    "load_program",
    "parse_program",
    "program_from_json",
    "program_to_json",
    "replay",
    "step",
    "to_torch_optimizer",
    "torch_source",
]


def __getattr__(name: str):
    """``evodisc.replay`` and ``evodisc.ReplayResult`` live in ``fitness.replay``; imported on
    first use, so that importing the program language does not load the trainer."""
    if name in ("replay", "ReplayResult"):
        from fitness import replay as module

        return getattr(module, name)
    raise AttributeError(f"module 'evodisc' has no attribute {name!r}")
