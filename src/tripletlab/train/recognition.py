"""Moved: ``index``/``search``/``verify`` are :mod:`tripletlab.pipeline.recognition` (old
names still work, with a DeprecationWarning)."""

from tripletlab._moved import moved_names

__getattr__ = moved_names(
    __name__,
    {
        **dict.fromkeys(
            [
                "BACKENDS",
                "index_run",
                "make_backend",
                "run_threshold",
                "search_index",
                "verify_run",
            ],
            "tripletlab.pipeline.recognition",
        ),
        "read_samples": "tripletlab.pipeline.data",
    },
)
