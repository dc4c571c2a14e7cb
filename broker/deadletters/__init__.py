"""Dead letters: every callback that could not be delivered, kept with its reason and history.

One concept per module: ``letter`` (the record and the API's answers and refusals), ``index``
(choosing letters page by page), ``drain`` (the consumer-group export), ``store`` (the
``DeadLetters`` API over them). The Lua that writes letters is includes/deadLetter.lua.
"""

from .index import HELD_STATES, LetterIndex
from .letter import (
    DeadLetter,
    KeepQuarantined,
    LetterGone,
    LetterNotFound,
    Page,
    ReplayRefused,
    ReplayResult,
    RunRef,
    Stats,
)
from .store import DeadLetters

__all__ = [
    "HELD_STATES",
    "DeadLetter",
    "DeadLetters",
    "KeepQuarantined",
    "LetterGone",
    "LetterIndex",
    "LetterNotFound",
    "Page",
    "ReplayRefused",
    "ReplayResult",
    "RunRef",
    "Stats",
]
