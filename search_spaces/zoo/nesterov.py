"""SGD with Nesterov momentum (Nesterov, 1983; Sutskever et al., 2013), as
torch.optim.SGD(params, lr, momentum=0.9, nesterov=True) with dampening=0, weight_decay=0.

torch's form: ``buf = μ·buf + g``, step along ``g + μ·buf``.
"""


def train(g, lr, buf):
    buf = 0.9 * buf + g
    return lr * (g + 0.9 * buf), buf
