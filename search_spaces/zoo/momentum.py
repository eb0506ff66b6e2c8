"""SGD with heavy-ball momentum (Polyak, 1964), as torch.optim.SGD(params, lr, momentum=0.9)
with dampening=0, nesterov=False, weight_decay=0.

torch keeps ``buf = μ·buf + g`` and seeds the buffer with ``g`` at the first step; with the
zero-initialised slot, ``0.9·0 + g`` is that same first value.
"""


def train(g, lr, buf):
    buf = 0.9 * buf + g
    return lr * buf, buf
