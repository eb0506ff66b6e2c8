"""AdaBelief (Zhuang et al., NeurIPS 2020, Algorithm 2), with betas=(0.9, 0.999), eps=1e-16,
no weight decay and no rectification; no library reference in torch.

The belief ``s`` tracks ``(g − m)²`` with the *updated* ``m``, and ``eps`` is added both inside
``s`` (carried to the next step, as in the authors' ``adabelief_pytorch``) and to the
denominator.
"""


def train(g, lr, t, m, s):
    m = interp(g, m, 0.9)
    s = interp(square(g - m), s, 0.999) + 1e-16
    mhat = m / (1 - 0.9**t)
    shat = s / (1 - 0.999**t)
    return lr * mhat / (sqrt(shat) + 1e-16), m, s
