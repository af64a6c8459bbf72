"""A run of tripletlab: config, registries and factories, the run directory, and the verbs a
user runs — ``train``, ``evaluate``, ``embed``, ``index``, ``search``, ``verify``.

The layer above ``train/``, ``evaluate/``, ``report/`` and ``data/``; ``tripletlab.cli`` only
parses arguments and calls these functions.

======================  ===========================================================
module                  holds
======================  ===========================================================
``config``              :class:`RunConfig` (pydantic), :func:`load_config`
``registries``          every name a run is configured with (losses, metrics, ...)
``factories``           build the loss, network, optimiser, schedule, kNN backend
``run_dir``             :class:`RunDir`: where a run's files lie
``data``                :func:`prepare_data` (load + split), reading user inputs
``trained``             :class:`TrainedModel` (a finished run), the ``embed`` verb
``training``            the ``train`` verb: :func:`run_training` → :class:`RunResult`
``evaluation``          the ``evaluate`` verb: :func:`evaluate_run`
``recognition``         the ``index``, ``search`` and ``verify`` verbs
======================  ===========================================================

Example:
    >>> from tripletlab.pipeline import load_config
    >>> load_config(None, {"loss.name": "batch-hard"}).loss.name
    'batch-hard'
"""

from tripletlab.pipeline.config import RunConfig, load_config
from tripletlab.pipeline.evaluation import evaluate_run
from tripletlab.pipeline.recognition import index_run, search_index, verify_run
from tripletlab.pipeline.run_dir import RunDir
from tripletlab.pipeline.run_result import RunResult
from tripletlab.pipeline.trained import TrainedModel, embed_file, embed_run, load_run
from tripletlab.pipeline.training import run_training

__all__ = [
    "RunConfig",
    "RunDir",
    "RunResult",
    "TrainedModel",
    "embed_file",
    "embed_run",
    "evaluate_run",
    "index_run",
    "load_config",
    "load_run",
    "run_training",
    "search_index",
    "verify_run",
]
