"""Cautious AdamW, C-AdamW (Liang et al., "Cautious Optimizers: Improving Training with One Line
of Code", 2024), as timm's AdamW(caution=True) with betas=(0.9, 0.999), eps=1e-8,
weight_decay=0.01; no library reference in torch.

The mask keeps the coordinates where the momentum agrees in sign with the gradient,
``mask = 1[m·g > 0]``, rescaled by ``1 / max(mean(mask), 1e-3)`` per tensor: the scaling of the
authors' current C-Optim code and of timm (their first release used ``numel / (sum(mask) + 1)``).
As in timm, the decoupled weight decay is applied before the step and is not masked.
"""


def train(w, g, lr, t, m, v):
    m = interp(g, m, 0.9)
    v = interp(square(g), v, 0.999)
    mask = relu(sign(m * g))
    mask = mask / maximum(mean(mask), 0.001)
    mhat = m * mask / (1 - 0.9**t)
    vhat = v / (1 - 0.999**t)
    update = mhat / (sqrt(vhat) + 1e-8) + 0.01 * w
    return update * lr, m, v
