"""Adamax (Kingma & Ba, 2015, section 7.1), as torch.optim.Adamax(params, lr) with
betas=(0.9, 0.999), eps=1e-8, weight_decay=0.

As in torch, ``eps`` is added to ``|g|`` inside the running maximum.
"""


def train(g, lr, t, m, u):
    m = interp(g, m, 0.9)
    u = maximum(0.999 * u, abs(g) + 1e-8)
    return lr / (1 - 0.9**t) * m / u, m, u
