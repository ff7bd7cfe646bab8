"""The linear-dynamics simulator against the closed forms of Tian, Chen & Ganguli (ALGORITHMS.md section 7)."""
import numpy as np
import pytest

from ssl_src.theory import collapse_threshold, fixed_points, simulate_matrix, simulate_modes


def test_fixed_points_match_the_worked_example():
    np.testing.assert_allclose(fixed_points(1.0, 0.5, 0.05), [0.0, 0.0544, 0.6122], atol=1e-4)


def test_fixed_points_without_weight_decay_and_above_the_threshold():
    np.testing.assert_allclose(fixed_points(1.0, 0.5, 0.0), [0.0, 1 / 1.5])  # the basin edge merges into 0
    assert collapse_threshold(1.0, 0.5) == pytest.approx(1 / 6)
    np.testing.assert_array_equal(fixed_points(1.0, 0.5, 0.2), [0.0])  # only the collapsed solution is left


@pytest.mark.parametrize("eta", [0.0, 0.05, 0.3])
def test_the_invariant_decays_as_exp_minus_two_eta_t(eta):
    alpha_p = 0.7
    p0, s0 = np.array([0.1, 0.5, 1.2]), np.array([0.4, 0.2, 3.0])
    t, p, s, _ = simulate_modes(p0, s0, alpha_p=alpha_p, eta=eta, sigma2=0.5, t_end=20, dt=0.005)
    c = s - p**2 / alpha_p
    np.testing.assert_allclose(c, c[0] * np.exp(-2 * eta * t)[:, None], rtol=1e-6, atol=1e-12)


@pytest.mark.slow
def test_a_mode_above_the_unstable_root_converges_to_the_stable_one_and_below_it_collapses():
    lower, upper = fixed_points(1.0, 0.5, 0.05)[1:]
    p0 = np.array([1.05 * lower, 0.95 * lower])
    _, p, s, _ = simulate_modes(p0, p0**2, eta=0.05, sigma2=0.5, t_end=400, dt=0.01)
    assert p[-1, 0] == pytest.approx(upper, abs=1e-6)
    assert p[-1, 1] < 1e-4 and s[-1, 1] < 1e-8


@pytest.mark.slow
def test_weight_decay_above_the_threshold_collapses_every_mode():
    eta = 1.05 * collapse_threshold(1.0, 0.5)
    p0 = np.linspace(0.05, 3.0, 12)
    _, p, s, _ = simulate_modes(p0, p0**2, eta=eta, sigma2=0.5, t_end=1000, dt=0.05)
    assert np.all(np.abs(p[-1]) < 1e-3) and np.all(s[-1] < 1e-6)
    _, p, _, _ = simulate_modes(p0, p0**2, eta=0.95 * collapse_threshold(1.0, 0.5), sigma2=0.5, t_end=200, dt=0.05)
    assert np.any(p[-1] > 0.1)  # just below the threshold the large modes survive


@pytest.mark.slow
def test_ema_target_tau_returns_to_one_at_the_fixed_point():
    p0 = np.array([0.3, 0.8])
    _, p, s, tau = simulate_modes(p0, p0**2, eta=0.04, beta=0.4, sigma2=0.5, t_end=400, dt=0.01)
    np.testing.assert_allclose(tau[-1], 1.0, atol=1e-6)
    np.testing.assert_allclose(p[-1], fixed_points(1.0, 0.5, 0.04)[-1], atol=1e-5)


def _matrix_run(**kwargs):
    rng = np.random.default_rng(0)
    d_in, d_out = 16, 8
    W0, W_p0 = 0.3 * rng.normal(size=(d_out, d_in)), 0.3 * rng.normal(size=(d_out, d_out))
    return simulate_matrix(W0, W_p0, X=np.eye(d_in), X_aug=0.5 * np.eye(d_in), t_end=150, dt=0.01,
                           record_every=500, **kwargs)


@pytest.mark.slow
def test_matrix_flow_aligns_the_eigenspaces_of_w_p_and_f():
    flow = _matrix_run(eta=0.01)
    s0, cos0 = flow.alignment(0)
    s, cos = flow.alignment(-1)
    alive = s > 1e-3
    assert alive.sum() >= 4
    assert np.all(cos[alive] > 0.999) and not np.all(cos0 > 0.9)
    # The matrix invariant decays as the per-mode one does.
    ratio = np.linalg.norm(flow.invariant(-1, 1.0)) / np.linalg.norm(flow.invariant(0, 1.0))
    assert ratio == pytest.approx(np.exp(-2 * 0.01 * 150), rel=1e-6)


@pytest.mark.slow
def test_matrix_flow_with_an_ema_target_aligns_too():
    flow = _matrix_run(eta=0.01, beta=0.4)
    s, cos = flow.alignment(-1)
    assert np.all(cos[s > 1e-3] > 0.99) and (s > 1e-3).sum() >= 4


@pytest.mark.slow
def test_removing_the_stop_gradient_collapses_every_mode():
    flow = _matrix_run(eta=0.0, stop_grad=False)
    assert np.linalg.eigvalsh(flow.F(0)).max() > 1
    assert np.linalg.eigvalsh(flow.F(-1)).max() < 1e-6
    with pytest.raises(ValueError):
        _matrix_run(stop_grad=False, beta=0.4)
