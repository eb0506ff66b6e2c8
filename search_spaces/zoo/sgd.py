"""SGD (Robbins & Monro, 1951), as torch.optim.SGD(params, lr) with momentum=0, dampening=0,
weight_decay=0."""


def train(g, lr):
    return lr * g
