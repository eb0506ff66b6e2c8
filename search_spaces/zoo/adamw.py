"""AdamW (Loshchilov & Hutter, 2019), as torch.optim.AdamW with lr, betas=(0.9, 0.999),
eps=1e-8, weight_decay=0.01."""


def train(w, g, lr, t, m, v):
    m = interp(g, m, 0.9)
    v = interp(square(g), v, 0.999)
    mhat = m / (1 - 0.9**t)
    vhat = v / (1 - 0.999**t)
    update = mhat / (sqrt(vhat) + 1e-8) + 0.01 * w
    return update * lr, m, v
