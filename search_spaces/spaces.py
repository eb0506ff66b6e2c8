"""The search spaces a campaign's ``[space]`` may name (``kind``), and the interface of each.

A ``[space]`` section maps onto a settings class (:data:`SPACES`); :func:`open_space` gives the
:class:`~search_spaces.interface.SearchSpace` those settings describe. The genome space is its
own settings class; the program space's settings (:class:`~search_spaces.space.ProgramSpace`)
sit below its mutations, so :class:`~search_spaces.programs.ProgramSearch` wraps them.
"""

from __future__ import annotations

from search_spaces.genome import GenomeSpace
from search_spaces.interface import SearchSpace
from search_spaces.programs import ProgramSearch
from search_spaces.space import ProgramSpace

#: A search space's settings: a ``[space]`` section.
SpaceSettings = ProgramSpace | GenomeSpace

#: The settings class of each kind of search space, the default first.
SPACES: dict[str, type] = {ProgramSearch.kind: ProgramSpace, GenomeSpace.kind: GenomeSpace}


def open_space(settings: SpaceSettings) -> SearchSpace:
    """The search space that ``settings`` describe."""
    if isinstance(settings, ProgramSpace):
        return ProgramSearch(settings)
    return settings
