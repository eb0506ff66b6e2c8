"""AMSGrad (Reddi, Kale & Kumar, 2018), as torch.optim.Adam(params, lr, amsgrad=True) with
betas=(0.9, 0.999), eps=1e-8, weight_decay=0.

As in torch, the running maximum is kept of the raw second moment ``v`` (not of its
bias-corrected value), and the bias correction is applied to the maximum when dividing.
"""


def train(g, lr, t, m, v, vmax):
    m = interp(g, m, 0.9)
    v = interp(square(g), v, 0.999)
    vmax = maximum(vmax, v)
    mhat = m / (1 - 0.9**t)
    return lr * mhat / (sqrt(vmax / (1 - 0.999**t)) + 1e-8), m, v, vmax
