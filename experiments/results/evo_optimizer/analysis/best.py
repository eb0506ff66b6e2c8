"""The best of campaign evo_optimizer: the selection's #1, candidate 12618; selection fitness
1.2255 ± 0.0817 on 8 seeds (search fitness 1.2494). Simplified from the program as found (the
same functional hash) by evodisc report.
"""


def train(w, g, lr, t, T, m, v):
    m = interp(g, m, 0.9074)
    mhat = m / (1 - 0.9074 ** t)
    v = interp(square(g), v, 0.9998814)
    denom = sqrt(v / (1 - 0.9998814 ** t)) + 9.134e-07
    update = (1 + cos(3.14159265359 * (t - 1) / T)) * (0.8081 * mhat + 0.561 * g / denom + 1.992 * mhat / denom + 0.0006425 * w)
    return 0.5 * lr * update, m, v
