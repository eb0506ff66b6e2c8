"""Adam (Kingma & Ba, 2015), as torch.optim.Adam(params, lr) with betas=(0.9, 0.999), eps=1e-8,
weight_decay=0, amsgrad=False."""


def train(g, lr, t, m, v):
    m = interp(g, m, 0.9)
    v = interp(square(g), v, 0.999)
    mhat = m / (1 - 0.9**t)
    vhat = v / (1 - 0.999**t)
    return lr * mhat / (sqrt(vhat) + 1e-8), m, v
