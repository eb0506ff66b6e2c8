"""adamw with its named constants tuned on the search suite digits_mlp, markov_lm, teacher_student,
ill_conditioned (seeds 0, 1, 2; tools/tune_zoo.py): beta1 = 0.818, beta2 = 0.99975, eps = 1e-07,
weight_decay = 0.00333. Fitness at its own constants 1.002 ± 0.046, tuned 1.077 ± 0.045 (34
variants trained).
"""


def train(w, g, lr, t, m, v):
    m = interp(g, m, 0.818)
    v = interp(square(g), v, 0.99975)
    mhat = m / (1 - 0.818 ** t)
    vhat = v / (1 - 0.99975 ** t)
    update = mhat / (sqrt(vhat) + 1e-07) + 0.00333 * w
    return update * lr, m, v
