"""evodisc: discover optimization algorithms by evolving symbolic update rules.

The public API; the command line (``evodisc …``) is a thin layer over these functions.

Importing evodisc is light: parsing, analysing, validating and hashing programs need NumPy only.
The names in :data:`_ON_FIRST_USE` need torch, pyarrow or the application layer (which trains);
their modules are imported the first time one of them is read (PEP 562), so that ``evodisc show``
or a search controller never pays for torch.
"""

from evodisc.analysis import analyse, eliminate_dead_code, ignores_gradient
from evodisc.hashing import HashInfo, functional_hash, functional_hash_info
from evodisc.interpreter import compile_program, init_state, step
from evodisc.lazy import on_first_use
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
from evodisc.validity import Validity, check_candidate

#: Public name -> the module that defines it, imported on first use.
_ON_FIRST_USE = {
    "CachedFitness": "evodisc.fitness_cache",
    "FitnessCache": "evodisc.fitness_cache",
    "fitness_config_key": "evodisc.fitness_cache",
    "to_torch_optimizer": "evodisc.export",
    "torch_source": "evodisc.export",
    "replay": "evodisc.app.replay",
    "ReplayResult": "evodisc.app.replay",
    "simplify": "evodisc.inspect.simplify",
    "Simplified": "evodisc.inspect.simplify",
    "recognise": "evodisc.inspect.recognise",
    "closest_known": "evodisc.inspect.recognise",
}

__all__ = [
    "PRIMITIVES",
    "HashInfo",
    "Program",
    "ProgramError",
    "Validity",
    "analyse",
    "check_candidate",
    "compile_program",
    "eliminate_dead_code",
    "format_program",
    "functional_hash",
    "functional_hash_info",
    "ignores_gradient",
    "init_state",
    "load_program",
    "parse_program",
    "program_from_json",
    "program_to_json",
    "step",
    *_ON_FIRST_USE,
]


__getattr__, __dir__ = on_first_use(globals(), _ON_FIRST_USE)
