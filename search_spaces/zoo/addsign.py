"""AddSign (Bello et al., "Neural Optimizer Search with Reinforcement Learning", ICML 2017), with
α=1, β=0.9 and no sign decay, as TensorFlow's tf.contrib.opt.AddSignOptimizer defaults; no
library reference in torch.

``update = (α + sign(g)·sign(m))·g`` with the updated moving average ``m``.
"""


def train(g, lr, m):
    m = interp(g, m, 0.9)
    return lr * (1 + sign(g) * sign(m)) * g, m
