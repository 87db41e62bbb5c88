"""Which items may be recommended: one rule for `recommend`, `similar` and the batch file.

An item rated once or twice can score above everything on one lucky rating, so served lists
only propose items with at least ``MIN_RATINGS`` train ratings (``--min-ratings`` overrides).
The top-N metrics rank every unseen item (the standard protocol) and are not filtered.
"""

from __future__ import annotations

import numpy as np

from factorflow.errors import ParameterError

MIN_RATINGS = 5


def candidate_mask(n_ratings: np.ndarray, min_ratings: int = MIN_RATINGS) -> np.ndarray:
    """Boolean mask of items with ≥ ``min_ratings`` (and ≥ 1) train ratings."""
    if min_ratings < 0:
        raise ParameterError(f"--min-ratings={min_ratings}: must be >= 0")
    return np.asarray(n_ratings) >= max(1, min_ratings)
