"""Moved: building a run's parts by name is :mod:`tripletlab.pipeline.factories` (old names
still work, with a DeprecationWarning)."""

from tripletlab._moved import moved_names

__getattr__ = moved_names(
    __name__,
    {
        "LOSS_NAMES": "tripletlab.pipeline.registries",
        "build_loss": "tripletlab.pipeline.factories",
        "build_network": "tripletlab.pipeline.factories",
    },
)
