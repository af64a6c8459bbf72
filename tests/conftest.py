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
    suppress_health_check=[HealthCheck.too_slow],
)
# max_examples given by a test's own @settings wins over a profile's, so "explore" widens the
# search by drawing fresh seeds on every run rather than by example counts alone.
settings.register_profile("explore", derandomize=False, print_blob=True)

if os.environ.get("CI") == "true":
    settings.load_profile("deterministic")
else:
    settings.load_profile(os.environ.get("TRIPLETLAB_HYPOTHESIS_PROFILE", "deterministic"))
