"""The best of campaign lion_search: the selection's #1, candidate 16627; selection fitness 1.1868
± 0.0463 on 8 seeds (search fitness 1.1980). Simplified from the program as found (the same
functional hash) by evodisc report.
"""


def train(g, lr, m, v, s9):
    m = interp(g, m, 0.81)
    v = interp(square(g), v, 0.9999023)
    update = interp(m, s9, 0.000975) / (sqrt(v) + 1.12e-06) + g
    return lr * update, m, v, g
