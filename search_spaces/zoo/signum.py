"""Signum, signSGD with momentum (Bernstein et al., ICML 2018, Algorithm 3), with β=0.9 and no
weight decay; no library reference in torch."""


def train(g, lr, m):
    m = interp(g, m, 0.9)
    return lr * sign(m), m
