"""Training: the :class:`Trainer` loop, checkpoints, logging, the distributed trainer and
offline mining. The whole run behind ``tripletlab train`` (config, data, report) is
:mod:`tripletlab.pipeline`; its names are still found here, with a DeprecationWarning.

Example:
    >>> from tripletlab.train import Trainer
    >>> Trainer.LAST_CHECKPOINT
    'last.pt'
"""

from tripletlab._moved import moved_names
from tripletlab.train.trainer import Trainer

__all__ = ["Trainer"]

__getattr__ = moved_names(
    __name__,
    {
        "RunConfig": "tripletlab.pipeline.config",
        "load_config": "tripletlab.pipeline.config",
        "RunResult": "tripletlab.pipeline.run_result",
        "run_training": "tripletlab.pipeline.training",
        "embed_run": "tripletlab.pipeline.trained",
        "evaluate_run": "tripletlab.pipeline.evaluation",
    },
)
