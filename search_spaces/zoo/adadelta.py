"""Adadelta (Zeiler, 2012), as torch.optim.Adadelta(params, lr) with rho=0.9, eps=1e-6,
weight_decay=0 (torch scales the step by lr, default 1.0)."""


def train(g, lr, v, d):
    v = interp(square(g), v, 0.9)
    delta = sqrt(d + 1e-6) / sqrt(v + 1e-6) * g
    d = interp(square(delta), d, 0.9)
    return lr * delta, v, d
