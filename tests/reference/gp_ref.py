"""gp_ref.py - reference values for tests/test_hpo_gp.c, computed with scikit-learn and mpmath.

Case: 2-D inputs, 8 training points, kernel ConstantKernel(1.7) * Matern([0.3, 0.7], nu=2.5),
alpha (noise) 1e-3, normalize_y=True, optimizer=None (fixed hyper-parameters). Writes the training
data, 5 test points, sklearn's posterior mean/variance (original units), its log marginal
likelihood and gradient w.r.t. log(sf2), log(l1), log(l2), and log expected improvement values
computed with mpmath at 50 digits (including the far tail z = -1e4).

Run: /usr/bin/python3 tests/reference/gp_ref.py  (writes tests/reference/fixtures/gp_ref.fx)
"""
import os
import sys

import mpmath
import numpy as np
from sklearn.gaussian_process import GaussianProcessRegressor
from sklearn.gaussian_process.kernels import ConstantKernel, Matern

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fixture_io import write_fixture  # noqa: E402

rs = np.random.RandomState(7)
X = rs.uniform(0, 1, size=(8, 2))
y = np.sin(6 * X[:, 0]) + 0.5 * X[:, 1] ** 2 + 3.0
Xs = rs.uniform(0, 1, size=(5, 2))
sf2, ls, noise = 1.7, [0.3, 0.7], 1e-3

kernel = ConstantKernel(sf2, constant_value_bounds='fixed') * Matern(length_scale=ls, nu=2.5,
                                                                     length_scale_bounds='fixed')
gpr = GaussianProcessRegressor(kernel=kernel, alpha=noise, normalize_y=True, optimizer=None)
gpr.fit(X, y)
mu, std = gpr.predict(Xs, return_std=True)

# log marginal likelihood and gradient need free hyper-parameters: same values, bounds not fixed
kfree = ConstantKernel(sf2) * Matern(length_scale=ls, nu=2.5)
g2 = GaussianProcessRegressor(kernel=kfree, alpha=noise, normalize_y=True, optimizer=None).fit(X, y)
theta = np.log([sf2] + ls)
lml, lml_grad = g2.log_marginal_likelihood(theta, eval_gradient=True)

mpmath.mp.dps = 50


def log_ei(m, s, best):
    z = (mpmath.mpf(m) - best) / s
    h = z * mpmath.ncdf(z) + mpmath.npdf(z)
    return float(mpmath.log(s * h))


ei_cases = np.array([[0.0, 1.0, 0.0], [1.5, 0.3, 0.2], [0.0, 1.0, 0.9], [0.0, 1.0, 5.0], [0.0, 1.0, 30.0],
                     [0.0, 1.0, 39.9], [0.0, 1.0, 40.1], [0.0, 2.0, 200.0], [0.0, 1e-3, 10.0],
                     [0.0, 1.0, 1e4]])
ei_ref = np.array([log_ei(m, s, b) for m, s, b in ei_cases])

# log-EI of the posterior above, in normalised units, best = max normalised training target
ym, ysd = y.mean(), y.std()
best_n = ((y - ym) / ysd).max()
gp_ei = np.array([log_ei((m - ym) / ysd, s / ysd, best_n) for m, s in zip(mu, std)])

out = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'fixtures', 'gp_ref.fx')
write_fixture(out, {
    'x': X, 'y': y, 'xs': Xs, 'hyper': np.array([sf2] + ls + [noise]),
    'mu': mu, 'var': std ** 2, 'lml': np.array([lml]), 'lml_grad': lml_grad,
    'ei_cases': ei_cases, 'ei_ref': ei_ref, 'gp_ei': gp_ei,
})
print('wrote', out)
