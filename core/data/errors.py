"""The one exception the data layer raises for missing or malformed data."""

from __future__ import annotations


class DataError(ValueError):
    """Data is missing or malformed; the message names the path and what was expected.

    A ValueError subclass so callers that validate configs can catch both alike.
    """
