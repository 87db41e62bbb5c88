"""FactorArrays.predict: r̂ = w·u + b + c + μ, the same whatever the chunk size."""

import numpy as np

from factorflow.factors import FactorArrays


def test_predict_is_the_biased_dot_product_in_any_chunking():
    rng = np.random.default_rng(0)
    f = FactorArrays(rng.standard_normal((100, 6)).astype(np.float32),
                     rng.standard_normal((70, 6)).astype(np.float32),
                     rng.standard_normal(100).astype(np.float32),
                     rng.standard_normal(70).astype(np.float32), 3.5)
    u, i = rng.integers(0, 100, 5000), rng.integers(0, 70, 5000)
    want = np.array([f.user_factors[a].astype(float) @ f.item_factors[b].astype(float)
                     + f.user_bias[a] + f.item_bias[b] + 3.5 for a, b in zip(u, i, strict=True)])
    np.testing.assert_allclose(f.predict(u, i), want, rtol=1e-12)
    np.testing.assert_allclose(f.predict(u, i, chunk=333), want, rtol=1e-12)
    assert f.predict(np.array([], int), np.array([], int)).shape == (0,)
