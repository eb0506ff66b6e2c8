"""evodisc: discover optimization algorithms by evolving symbolic update rules.

The public API; the command line (``evodisc …``) is a thin layer over these functions.
"""

from evodisc.analysis import analyse, eliminate_dead_code, ignores_gradient
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
    "Program",
    "ProgramError",
    "analyse",
    "compile_program",
    "eliminate_dead_code",
    "format_program",
    "ignores_gradient",
    "init_state",
    "load_program",
    "parse_program",
    "program_from_json",
    "program_to_json",
    "step",
]
