"""Session-wide test settings."""

import os

# scikit-learn's check_array_api_input (run by tests/test_estimator.py) checks that enabling
# array-API dispatch leaves TripletEmbedder's results unchanged; scipy only allows that mode
# when this is set before scipy is first imported, and skips the check otherwise.
os.environ.setdefault("SCIPY_ARRAY_API", "1")
