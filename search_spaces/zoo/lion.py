"""Lion (Chen et al., "Symbolic Discovery of Optimization Algorithms", NeurIPS 2023), as
lion_pytorch.Lion(params, lr) with betas=(0.9, 0.99), weight_decay=0 (the library's defaults).

The paper's Program 1 adds ``λ·w`` to the update; with the library's default λ = 0 that term
is left out.
"""


def train(g, lr, m):
    update = sign(interp(g, m, 0.9))
    m = interp(g, m, 0.99)
    return lr * update, m
