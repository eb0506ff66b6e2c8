"""NAdam (Dozat, 2016, "Incorporating Nesterov Momentum into Adam"), as torch.optim.NAdam(params,
lr) with betas=(0.9, 0.999), eps=1e-8, momentum_decay=0.004, weight_decay=0.

torch's momentum schedule ``μ_t = β1·(1 − ½·0.96^(0.004·t))`` needs the running product
``Π μ_i``, which has no closed form; the slot ``q`` keeps ``1 − Π μ_i`` (so that it starts at 0)
as a tensor of equal values. The memory count is therefore 3, where torch keeps one scalar.
"""


def train(g, lr, t, m, v, q):
    mu = 0.9 * (1 - 0.5 * 0.96 ** (0.004 * t))
    mu_next = 0.9 * (1 - 0.5 * 0.96 ** (0.004 * (t + 1)))
    q = 1 - (1 - q) * mu
    m = interp(g, m, 0.9)
    v = interp(square(g), v, 0.999)
    denom = sqrt(v / (1 - 0.999**t)) + 1e-8
    step = (1 - mu) / q * g + mu_next / (1 - (1 - q) * mu_next) * m
    return lr * step / denom, m, v, q
