"""The "leave this field alone" marker for partial updates, where None means "clear it"."""

from enum import Enum
from typing import Final


class Unset(Enum):
    """The type of `UNSET`: a change-set field that is not being changed."""

    UNSET = "unset"


UNSET: Final = Unset.UNSET
