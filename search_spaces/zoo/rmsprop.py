"""RMSprop (Tieleman & Hinton, 2012, Coursera lecture 6.5), as torch.optim.RMSprop(params, lr)
with alpha=0.99, eps=1e-8, momentum=0, centered=False, weight_decay=0."""


def train(g, lr, v):
    v = interp(square(g), v, 0.99)
    return lr * g / (sqrt(v) + 1e-8), v
