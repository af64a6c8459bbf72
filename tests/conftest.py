"""Session-wide test settings.

Hypothesis profiles
-------------------
``deterministic`` (the default, and always under ``CI=true``): derandomised, no example
database, so the suite gives the same verdict on every run and every clean clone — a
submission is never refused by an unlucky draw. ``explore``: fresh random draws, five times
the examples, and the local example database, for finding new failures before a stop::

    .venv/bin/python -m pytest -q --hypothesis-profile=explore

Select it with ``--hypothesis-profile`` or ``TRIPLETLAB_HYPOTHESIS_PROFILE=explore``.
"""

import os

import pytest
from hypothesis import HealthCheck, settings

# scikit-learn's check_array_api_input (run by tests/test_estimator.py) checks that enabling
# array-API dispatch leaves TripletEmbedder's results unchanged; scipy only allows that mode
# when this is set before scipy is first imported, and skips the check otherwise.
os.environ.setdefault("SCIPY_ARRAY_API", "1")

settings.register_profile(
    "deterministic",
    derandomize=True,
    database=None,
    print_blob=True,
    # the batch-loss tests choose their implementation path once per test (a patched module
    # constant, see loss_path below), not per example: a function-scoped fixture is right
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
# max_examples given by a test's own @settings wins over a profile's, so "explore" widens the
# search by drawing fresh seeds on every run rather than by example counts alone.
settings.register_profile(
    "explore",
    derandomize=False,
    print_blob=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)

if os.environ.get("CI") == "true":
    settings.load_profile("deterministic")
else:
    settings.load_profile(os.environ.get("TRIPLETLAB_HYPOTHESIS_PROFILE", "deterministic"))


def force_general_loss_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """Switch off the small-batch shortcuts of the batch losses for one test.

    Small batches take dense forms (functional/_dense_small.py, _dense_pairs.py,
    _dense_semi_hard.py) on a screened matrix; the general path on a directly computed matrix
    for small float32 work (functional/_refined_distances.py). The bucketed forms and the tie
    refinement of the GEMM matrix (functional/_ties.py) then only run on large batches. This
    makes every batch take them, so the same tests check both implementations.
    """
    import tripletlab.functional._dense_pairs as dense_pairs
    import tripletlab.functional._dense_semi_hard as dense_semi_hard
    import tripletlab.functional._refined_distances as refined
    import tripletlab.functional.batch_hard as batch_hard

    monkeypatch.setattr(refined, "_DIRECT_MAX_WORK", 0)
    monkeypatch.setattr(refined, "_DIRECT_MAX_WORK_MANY_POSITIVES", 0)
    monkeypatch.setattr(batch_hard, "DENSE_MAX_BATCH", 0)
    monkeypatch.setattr(dense_pairs, "DENSE_PAIRS_MAX_ELEMENTS", 0)
    monkeypatch.setattr(dense_semi_hard, "DENSE_SEMI_HARD_MAX_ELEMENTS", 0)


@pytest.fixture(params=["dense", "general"])
def loss_path(request, monkeypatch):
    """Run a batch-loss test on the small-batch forms and again on the general ones."""
    if request.param == "general":
        force_general_loss_path(monkeypatch)
    return request.param
