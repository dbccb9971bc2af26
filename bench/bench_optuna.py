#!/usr/bin/python3
"""bench/bench_optuna.py [--seeds 20] [--evals 100] [--fn a,b] - Optuna's TPE sampler (Debian
python3-optuna 3.1, default settings: TPESampler(seed=s), 10 random startup trials) on the functions
of bench/bench_hpo.c, written here again independently from their definitions (Surjanovic &
Bingham's library), with the same boxes, global minima and output: simple regret = best - minimum,
median [q25, q75] over seeds (numpy's linear quantiles) after 25, 50 and 100 trials.
The table it prints is comparable row for row with `bench_hpo --method new,legacy,random`.
"""
import argparse
import math
import time

import numpy as np
import optuna


def branin(x):
    a, b, c, r, s, t = 1, 5.1 / (4 * math.pi ** 2), 5 / math.pi, 6, 10, 1 / (8 * math.pi)
    return a * (x[1] - b * x[0] ** 2 + c * x[0] - r) ** 2 + s * (1 - t) * math.cos(x[0]) + s


A3 = np.array([[3, 10, 30], [0.1, 10, 35], [3, 10, 30], [0.1, 10, 35]])
P3 = 1e-4 * np.array([[3689, 1170, 2673], [4699, 4387, 7470], [1091, 8732, 5547], [381, 5743, 8828]])
A6 = np.array([[10, 3, 17, 3.5, 1.7, 8], [0.05, 10, 17, 0.1, 8, 14], [3, 3.5, 1.7, 10, 17, 8],
               [17, 8, 0.05, 10, 0.1, 14]])
P6 = 1e-4 * np.array([[1312, 1696, 5569, 124, 8283, 5886], [2329, 4135, 8307, 3736, 1004, 9991],
                      [2348, 1451, 3522, 2883, 3047, 6650], [4047, 8828, 8732, 5743, 1091, 381]])
ALPHA = np.array([1.0, 1.2, 3.0, 3.2])


def hartmann(x, a, p):
    x = np.asarray(x)
    return -float(np.sum(ALPHA * np.exp(-np.sum(a * (x - p) ** 2, axis=1))))


def rosenbrock(x):
    return sum(100 * (x[i + 1] - x[i] ** 2) ** 2 + (1 - x[i]) ** 2 for i in range(len(x) - 1))


def levy(x):
    w = [1 + (v - 1) / 4 for v in x]
    s = math.sin(math.pi * w[0]) ** 2
    s += sum((wi - 1) ** 2 * (1 + 10 * math.sin(math.pi * wi + 1) ** 2) for wi in w[:-1])
    return s + (w[-1] - 1) ** 2 * (1 + math.sin(2 * math.pi * w[-1]) ** 2)


def styblinski_tang(x):
    return sum(0.5 * (v ** 4 - 16 * v ** 2 + 5 * v) for v in x)


def rastrigin(x):
    return 10 * len(x) + sum(v * v - 10 * math.cos(2 * math.pi * v) for v in x)


def ackley(x):
    d = len(x)
    return (-20 * math.exp(-0.2 * math.sqrt(sum(v * v for v in x) / d))
            - math.exp(sum(math.cos(2 * math.pi * v) for v in x) / d) + 20 + math.e)


FNS = [  # key, name, box, global minimum, f
    ("branin", "Branin (2-D)", [(-5, 10), (0, 15)], 0.397887357729739, branin),
    ("h3", "Hartmann3 (3-D)", [(0, 1)] * 3, -3.86278214782076, lambda x: hartmann(x, A3, P3)),
    ("h6", "Hartmann6 (6-D)", [(0, 1)] * 6, -3.32236801141551, lambda x: hartmann(x, A6, P6)),
    ("rosen2", "Rosenbrock (2-D, [-2,2]^2)", [(-2, 2)] * 2, 0.0, rosenbrock),
    ("rosen4", "Rosenbrock (4-D, [-5,10]^4)", [(-5, 10)] * 4, 0.0, rosenbrock),
    ("levy4", "Levy (4-D)", [(-10, 10)] * 4, 0.0, levy),
    ("st4", "Styblinski-Tang (4-D)", [(-5, 5)] * 4, -156.66466281508568, styblinski_tang),
    ("rast4", "Rastrigin (4-D)", [(-5.12, 5.12)] * 4, 0.0, rastrigin),
    ("ackley5", "Ackley (5-D)", [(-32.768, 32.768)] * 5, 0.0, ackley),
]


def fmt(v):
    return "%.3g" % v


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, default=20)
    ap.add_argument("--seed0", type=int, default=1000)
    ap.add_argument("--evals", type=int, default=100)
    ap.add_argument("--fn", default="")
    a = ap.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    # the minima as written must be the functions' minima (a wrong constant would shift every row)
    assert abs(branin([math.pi, 2.275]) - 0.397887357729739) < 1e-9
    assert abs(styblinski_tang([-2.903534] * 4) + 156.66466281508568) < 1e-6
    assert abs(hartmann([0.20169, 0.150011, 0.476874, 0.275332, 0.311652, 0.6573], A6, P6) + 3.32236801141551) < 1e-5
    marks = [m for m in (25, 50, 100) if m <= a.evals]
    print("Optuna %s TPESampler (defaults), simple regret, median [q25, q75] over %d seeds\n" % (optuna.__version__, a.seeds))
    print("| function | method | " + " | ".join("after %d" % m for m in marks) + " |")
    print("|---|---|" + "---|" * len(marks))
    for key, name, box, fmin, f in FNS:
        if a.fn and key not in a.fn.split(","):
            continue
        t0 = time.time()
        reg = np.zeros((a.seeds, len(marks)))
        for s in range(a.seeds):
            study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=a.seed0 + s))
            study.optimize(lambda t: f([t.suggest_float("x%d" % j, lo, hi) for j, (lo, hi) in enumerate(box)]),
                           n_trials=a.evals)
            vals = np.minimum.accumulate([t.value for t in study.trials])
            reg[s] = [vals[m - 1] - fmin for m in marks]
        cells = ["%s [%s, %s]" % (fmt(np.median(reg[:, k])), fmt(np.quantile(reg[:, k], 0.25)),
                                  fmt(np.quantile(reg[:, k], 0.75))) for k in range(len(marks))]
        print("| %s | Optuna TPE | %s | %.0f s" % (name, " | ".join(cells), time.time() - t0), flush=True)


if __name__ == "__main__":
    main()
