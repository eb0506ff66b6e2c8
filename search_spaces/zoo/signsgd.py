"""signSGD (Bernstein et al., ICML 2018): step along the sign of the gradient; no library
reference in torch."""


def train(g, lr):
    return lr * sign(g)
