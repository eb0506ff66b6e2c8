"""Adagrad (Duchi, Hazan & Singer, 2011), as torch.optim.Adagrad(params, lr) with lr_decay=0,
weight_decay=0, initial_accumulator_value=0, eps=1e-10."""


def train(g, lr, s):
    s = s + square(g)
    return lr * g / (sqrt(s) + 1e-10), s
