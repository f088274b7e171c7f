"""Reference tests: each density against a closed form (scipy) or an exact identity."""

import numpy as np
import pytest
from scipy import stats

from tfcraft.anomaly import FlowDetector, GaussianMixtureDetector, VAEDetector


def test_one_component_mixture_is_scipy_multivariate_normal():
    rng = np.random.default_rng(0)
    covariance = np.array([[2.0, 0.8, 0.0], [0.8, 1.0, -0.3], [0.0, -0.3, 0.5]])
    mean = np.array([1.0, -2.0, 0.5])
    X = rng.multivariate_normal(mean, covariance, size=3000).astype(np.float32)
    detector = GaussianMixtureDetector(1, calibration="holdout", seed=0).fit(X)
    assert detector.n_components_ == 1
    test = rng.multivariate_normal(mean, 3.0 * covariance, size=500).astype(np.float32)
    reference = stats.multivariate_normal.logpdf(
        test.astype(np.float64), detector.means_[0], detector.covariances_[0]
    )
    np.testing.assert_allclose(detector.score_samples(test), reference, rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(detector.anomaly_score(test), -reference, rtol=1e-6, atol=1e-8)
    # the tfd.MixtureSameFamily the detector exposes is the same density
    np.testing.assert_allclose(
        detector.distribution().log_prob(test.astype(np.float64)).numpy(), reference, rtol=1e-6
    )
    # Clean Gaussian data: trimming, reweighting and shrinkage aside, the fit is
    # the sample mean and covariance (up to their sampling error at n=3000).
    np.testing.assert_allclose(detector.means_[0], X.mean(axis=0), atol=0.05)
    # within 10%: the reweighting step's truncation bias (below) is about 7% at d=3
    ratio = np.diag(detector.covariances_[0]) / np.diag(np.cov(X.T))
    assert np.all((ratio > 0.9) & (ratio < 1.1)), ratio


@pytest.mark.xfail(
    strict=True,
    reason=(
        "mixture.py bug: the reweighting step refits on the rows inside the chi-square "
        "97.5% quantile and keeps that truncated covariance, which is biased low by "
        "P(chi2_{d+2} <= q) / P(chi2_d <= q) (0.927 at d=3); MCD's reweighting "
        "consistency factor (as in robustbase::covMcd) is missing"
    ),
)
def test_one_component_mixture_covariance_is_consistent_on_clean_gaussian_data():
    rng = np.random.default_rng(0)
    covariance = np.array([[2.0, 0.8, 0.0], [0.8, 1.0, -0.3], [0.0, -0.3, 0.5]])
    X = rng.multivariate_normal(np.zeros(3), covariance, size=20000)
    detector = GaussianMixtureDetector(1, calibration="holdout", seed=0).fit(X)
    ratio = np.diag(detector.covariances_[0]) / np.diag(np.cov(X.T))
    np.testing.assert_allclose(ratio, 1.0, atol=0.03)


def test_mixture_explain_terms_sum_to_half_the_squared_mahalanobis_distance():
    rng = np.random.default_rng(1)
    X = rng.multivariate_normal([0, 0, 0], [[1, 0.5, 0], [0.5, 1, 0], [0, 0, 2]], 1000)
    detector = GaussianMixtureDetector(1, calibration="holdout", seed=0).fit(X)
    test = rng.normal(size=(50, 3)) * 2
    diff = test - detector.means_[0]
    mahalanobis = np.einsum("ni,ij,nj->n", diff, np.linalg.inv(detector.covariances_[0]), diff)
    np.testing.assert_allclose(detector.explain(test).sum(axis=1), 0.5 * mahalanobis, rtol=1e-5)
    # and so they are the anomaly score minus the normalising constant
    constant = 0.5 * np.linalg.slogdet(2 * np.pi * detector.covariances_[0])[1]
    np.testing.assert_allclose(
        detector.explain(test).sum(axis=1), detector.anomaly_score(test) - constant, rtol=1e-5
    )


@pytest.fixture(scope="module")
def flow_1d():
    rng = np.random.default_rng(2)
    X = np.concatenate([rng.normal(-2.0, 0.5, 600), rng.normal(1.5, 1.0, 400)])[:, None]
    detector = FlowDetector(hidden_units=(8,), num_layers=3, epochs=20, batch_size=128, seed=0).fit(
        X.astype(np.float32)
    )
    return detector, X


def test_one_dimensional_flow_density_integrates_to_one(flow_1d):
    detector, X = flow_1d
    # The Sinh between the MAF layers gives the flow heavy (log-normal-like) tails,
    # so a grid in x misses mass far out (1.6% beyond |x| = 60 here). Integrate
    # on a fine grid in u = asinh(x) instead: p(x) dx = p(sinh u) cosh(u) du,
    # which reaches |x| = sinh(25) ~ 4e10.
    u = np.linspace(-25.0, 25.0, 200_001)
    x = np.sinh(u)
    density = np.exp(detector.score_samples(x[:, None]))
    assert abs(np.trapezoid(density * np.cosh(u), u) - 1.0) < 1e-2
    # not a trivial pass: most of the mass sits where the data are
    inside = (x > X.min()) & (x < X.max())
    assert np.trapezoid((density * np.cosh(u))[inside], u[inside]) > 0.75
    assert detector.score_samples(np.array([[-2.0]])) > detector.score_samples(np.array([[8.0]]))


def test_flow_log_prob_is_the_tfp_masked_autoregressive_flow():
    rng = np.random.default_rng(3)
    X = (rng.normal(size=(500, 3)) @ np.array([[1, 0, 0], [0.8, 1, 0], [0, -0.5, 1]])).astype(
        np.float32
    )
    detector = FlowDetector(hidden_units=(8,), num_layers=2, epochs=3, seed=0).fit(X)
    test = rng.normal(size=(40, 3)).astype(np.float32)
    reference = detector.distribution().log_prob(test).numpy()
    np.testing.assert_allclose(detector.score_samples(test), reference, rtol=1e-4, atol=1e-4)
    # the per-feature conditionals add up to the joint: explain sums to the anomaly score
    np.testing.assert_allclose(
        detector.explain(test).sum(axis=1), detector.anomaly_score(test), rtol=1e-5, atol=1e-5
    )


def _exact_linear_vae_log_likelihood(detector, X):
    """`log N(x | b, K^T K + diag(sigma^2))` of a VAE with a linear decoder `z K + b`."""
    model = detector.model_
    (dense,) = model.decoder.layers
    kernel = np.asarray(dense.kernel, dtype=np.float64)
    bias = np.asarray(dense.bias, dtype=np.float64)
    variance = np.exp(2.0 * np.asarray(model.log_scale, dtype=np.float64))
    covariance = kernel.T @ kernel + np.diag(variance)
    return stats.multivariate_normal.logpdf(X.astype(np.float64), bias, covariance)


def test_vae_bound_increases_with_samples_and_stays_below_the_exact_log_likelihood():
    # Linear-Gaussian data x = W z + noise. With `hidden_units=()` the decoder is
    # linear, so the fitted VAE *is* a linear-Gaussian model whose exact marginal
    # N(b, K^T K + diag(sigma^2)) we compute from its weights. The IWAE bound is a
    # lower bound of that fitted model's own log-likelihood, whatever the weights:
    # E[bound_K] <= E[bound_2K] <= log p(x) (Burda et al. 2016).
    rng = np.random.default_rng(4)
    W = rng.normal(size=(4, 2))
    X = (rng.normal(size=(1500, 2)) @ W.T + 0.5 * rng.normal(size=(1500, 4))).astype(np.float32)
    detector = VAEDetector(
        2, hidden_units=(), epochs=15, batch_size=128, support_fraction=1.0, seed=0
    ).fit(X)
    test = X[:1000]
    exact = _exact_linear_vae_log_likelihood(detector, test)
    bounds = {
        k: np.stack([detector.log_likelihood_bound(test, k, seed=s) for s in range(5)])
        for k in (1, 10, 100)
    }
    means = {k: float(b.mean()) for k, b in bounds.items()}
    # per-row gaps averaged over rows and noise seeds, with their standard error
    for k in (1, 10, 100):
        gap = exact[None, :] - bounds[k]
        standard_error = gap.mean(axis=1).std(ddof=1) / np.sqrt(5) + 1e-6
        assert gap.mean() > -3.0 * standard_error, (k, gap.mean(), standard_error)
    assert means[1] < means[10] < means[100] <= exact.mean() + 1e-3
    assert means[10] - means[1] > 0.01  # a real improvement, not rounding
    # K = num_importance_samples with the scoring seed is what score_samples returns
    np.testing.assert_allclose(
        detector.log_likelihood_bound(test[:50], detector.num_importance_samples),
        detector.score_samples(test[:50]),
        rtol=1e-5,
    )
