"""Moved: the run configuration is :mod:`tripletlab.pipeline.config` (old names still work,
with a DeprecationWarning)."""

from tripletlab._moved import moved_names

__getattr__ = moved_names(
    __name__,
    dict.fromkeys(
        [
            "LOSSES",
            "DataConfig",
            "EvalConfig",
            "LossConfig",
            "ModelConfig",
            "OptimConfig",
            "ReportConfig",
            "RunConfig",
            "TrainConfig",
            "config_from_dict",
            "load_config",
            "read_config_file",
        ],
        "tripletlab.pipeline.config",
    ),
)
