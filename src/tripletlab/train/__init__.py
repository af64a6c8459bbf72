"""Training: the Trainer, checkpoints and logging, and the whole run behind ``tripletlab train``.

Example:
    >>> from tripletlab.train import load_config, run_training
    >>> cfg = load_config(None, {"train.epochs": 2, "out": "/tmp/tl-example"})
    >>> result = run_training(cfg)  # doctest: +SKIP
"""

from tripletlab.train.config import RunConfig, load_config
from tripletlab.train.run import RunResult, embed_run, evaluate_run, run_training
from tripletlab.train.trainer import Trainer

__all__ = [
    "RunConfig",
    "RunResult",
    "Trainer",
    "embed_run",
    "evaluate_run",
    "load_config",
    "run_training",
]
