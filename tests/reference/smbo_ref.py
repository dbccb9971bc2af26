"""smbo_ref.py - reference values for the SMBO output transforms in tests/test_hpo_smbo.c.

Yeo-Johnson: scores are standardised (mean, population std), then scikit-learn's
PowerTransformer(method='yeo-johnson', standardize=False) fits lambda by maximum likelihood and
transforms them (smbo_transform_y with SMBO_YTF_YJ does the same). Three cases: a heavy lower tail
(like -Rosenbrock scores: lambda > 1), a heavy upper tail (lambda < 1), nearly normal data.
Rank (Gaussian copula): scipy.stats.norm.ppf((rankdata(y) - 0.5) / n), ties given their mean rank.

Run: /usr/bin/python3 tests/reference/smbo_ref.py  (writes tests/reference/fixtures/smbo_ref.fx)
"""
import os
import sys

import numpy as np
from scipy.stats import norm, rankdata
from sklearn.preprocessing import PowerTransformer

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fixture_io import write_fixture  # noqa: E402

rs = np.random.RandomState(5)
cases = [
    -np.exp(rs.normal(0, 1.5, size=30)),   # heavy lower tail (minimising a log-normal-ish objective)
    np.exp(rs.normal(0, 1.0, size=25)),    # heavy upper tail
    rs.normal(3, 2, size=20),              # near normal
]
arrays = {}
for k, y in enumerate(cases):
    x = (y - y.mean()) / y.std()
    pt = PowerTransformer(method='yeo-johnson', standardize=False).fit(x[:, None])
    arrays['y%d' % k] = y
    arrays['yj%d' % k] = pt.transform(x[:, None])[:, 0]
    arrays['lambda%d' % k] = np.array([pt.lambdas_[0]])
yr = np.array([3.0, 1.0, 4.0, 1.0, 5.0, 9.0, 2.0, 6.0, 5.0, 3.0, 5.0])
arrays['yr'] = yr
arrays['rank'] = norm.ppf((rankdata(yr) - 0.5) / len(yr))
out = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'fixtures', 'smbo_ref.fx')
write_fixture(out, arrays)
for k in range(3):
    print('case %d: lambda %.6f' % (k, arrays['lambda%d' % k][0]))
