"""PowerSign (Bello et al., "Neural Optimizer Search with Reinforcement Learning", ICML 2017),
with base e, β=0.9 and no sign decay, as TensorFlow's tf.contrib.opt.PowerSignOptimizer
defaults; no library reference in torch.

``update = e^(sign(g)·sign(m))·g`` with the updated moving average ``m``.
"""


def train(g, lr, m):
    m = interp(g, m, 0.9)
    return lr * exp(sign(g) * sign(m)) * g, m
