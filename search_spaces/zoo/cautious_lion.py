"""Cautious Lion, C-Lion (Liang et al., "Cautious Optimizers: Improving Training with One Line of
Code", 2024), as timm's Lion(caution=True) with betas=(0.9, 0.99), weight_decay=0; no library
reference in torch.

The mask keeps the coordinates where the Lion update agrees in sign with the gradient,
``mask = 1[u·g > 0]``, rescaled by ``1 / max(mean(mask), 1e-3)`` per tensor: the scaling of the
authors' current C-Optim code and of timm (their first release used ``numel / (sum(mask) + 1)``).
"""


def train(g, lr, m):
    update = sign(interp(g, m, 0.9))
    mask = relu(sign(update * g))
    update = update * mask / maximum(mean(mask), 0.001)
    m = interp(g, m, 0.99)
    return lr * update, m
