"""Old import paths of names that moved: a module ``__getattr__`` that finds them lazily.

A lower layer must not import a higher one (``tests/test_layering.py``), yet code written
against ``tripletlab.train.RunConfig`` or ``tripletlab.train.run.run_training`` should keep
working for a release. :func:`moved_names` gives such a module a PEP 562 ``__getattr__``
that imports the new home only when an old name is used, with a DeprecationWarning.

Example:
    >>> import warnings
    >>> getattr_ = moved_names("old.place", {"sqrt": "math"})
    >>> with warnings.catch_warnings(record=True) as caught:
    ...     warnings.simplefilter("always")
    ...     getattr_("sqrt")(4.0), caught[0].category.__name__
    (2.0, 'DeprecationWarning')
"""

from __future__ import annotations

import importlib
import warnings
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["moved_names"]


def moved_names(module: str, homes: Mapping[str, str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` for ``module`` resolving each name of ``homes`` (name → new
    module) with a DeprecationWarning; other names raise AttributeError as usual."""

    def __getattr__(name: str) -> Any:
        home = homes.get(name)
        if home is None:
            raise AttributeError(f"module {module!r} has no attribute {name!r}")
        warnings.warn(
            f"{module}.{name} moved to {home}.{name}; the old path will be removed",
            DeprecationWarning,
            stacklevel=2,
        )
        return getattr(importlib.import_module(home), name)

    return __getattr__
