"""Moved: the run behind ``tripletlab train`` is :mod:`tripletlab.pipeline` (old names still
work, with a DeprecationWarning)."""

from tripletlab._moved import moved_names

__getattr__ = moved_names(
    __name__,
    {
        "KEY_METRICS": "tripletlab.pipeline.run_result",
        "RunResult": "tripletlab.pipeline.run_result",
        "run_training": "tripletlab.pipeline.training",
        "PreparedData": "tripletlab.pipeline.data",
        "prepare_data": "tripletlab.pipeline.data",
        "read_input": "tripletlab.pipeline.data",
        "load_run": "tripletlab.pipeline.trained",
        "embed_run": "tripletlab.pipeline.trained",
        "embed_file": "tripletlab.pipeline.trained",
        "evaluate_run": "tripletlab.pipeline.evaluation",
    },
)
