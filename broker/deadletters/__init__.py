"""Dead letters: every callback that could not be delivered, kept with its reason and history.

One concept per module: ``letter`` (the record and the API's answers and refusals), ``index``
(choosing letters page by page), ``drain`` (the consumer-group export), ``store`` (the
``DeadLetters`` API over them), ``selection`` (every filter, kind and state too),
``redrive`` (bulk replay). The Lua that writes letters is includes/deadLetter.lua.
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
from .redrive import RedriveNotFound, RedriveProgress, RedriveRequest, Redrives
from .selection import FilterError, LetterFilter, matching_letters, select_letters
from .store import DeadLetters

__all__ = [
    "HELD_STATES",
    "DeadLetter",
    "DeadLetters",
    "KeepQuarantined",
    "FilterError",
    "LetterGone",
    "LetterIndex",
    "LetterFilter",
    "LetterNotFound",
    "Page",
    "RedriveNotFound",
    "RedriveProgress",
    "RedriveRequest",
    "Redrives",
    "ReplayRefused",
    "ReplayResult",
    "RunRef",
    "Stats",
    "matching_letters",
    "select_letters",
]
