"""The range checks of :class:`~tripletlab.train.trainer.Trainer`'s options, made at once.

A bad option is the user's mistake: it raises :class:`~tripletlab.errors.InvalidArgumentError`
naming the option and the value, before anything is moved to a device or trained.

Example:
    >>> check_trainer_options(accumulate_batches=2, workers=0, grad_clip=None,
    ...                       validate_every=1, checkpoint_every=1)
    >>> check_trainer_options(accumulate_batches=0, workers=0, grad_clip=None,
    ...                       validate_every=1, checkpoint_every=1)
    Traceback (most recent call last):
    ...
    tripletlab.errors.InvalidArgumentError: accumulate_batches must be an integer >= 1; got 0
"""

from __future__ import annotations

from tripletlab.errors import InvalidArgumentError

__all__ = ["check_trainer_options"]


def check_trainer_options(
    accumulate_batches: int,
    workers: int,
    grad_clip: float | None,
    validate_every: int,
    checkpoint_every: int,
) -> None:
    """InvalidArgumentError naming the first option out of its range (see :class:`Trainer`
    for what each means): ``accumulate_batches`` an integer >= 1, ``workers`` an integer
    >= 0, ``grad_clip`` > 0 or None, ``validate_every`` and ``checkpoint_every`` >= 1."""
    if isinstance(accumulate_batches, bool) or not isinstance(accumulate_batches, int):
        raise InvalidArgumentError(
            f"accumulate_batches must be an integer >= 1; got {accumulate_batches!r}"
        )
    if accumulate_batches < 1:
        raise InvalidArgumentError(
            f"accumulate_batches must be an integer >= 1; got {accumulate_batches!r}"
        )
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 0:
        raise InvalidArgumentError(f"workers must be an integer >= 0; got {workers!r}")
    if grad_clip is not None and not grad_clip > 0:
        raise InvalidArgumentError(f"grad_clip must be > 0 or None; got {grad_clip!r}")
    if validate_every < 1 or checkpoint_every < 1:
        raise InvalidArgumentError("validate_every and checkpoint_every must be >= 1")
