"""adam with its named constants tuned on the search suite digits_mlp, markov_lm, teacher_student,
ill_conditioned (seeds 0, 1, 2; tools/tune_zoo.py): beta1 = 0.818, beta2 = 0.9995, eps = 1e-08.
Fitness at its own constants 1.006 ± 0.044, tuned 1.076 ± 0.048 (18 variants trained).
"""


def train(g, lr, t, m, v):
    m = interp(g, m, 0.818)
    v = interp(square(g), v, 0.9995)
    mhat = m / (1 - 0.818 ** t)
    vhat = v / (1 - 0.9995 ** t)
    return lr * mhat / (sqrt(vhat) + 1e-08), m, v
