"""amsgrad with its named constants tuned on the search suite digits_mlp, markov_lm,
teacher_student, ill_conditioned (seeds 0, 1, 2; tools/tune_zoo.py): beta1 = 0.818, beta2 =
0.9842, eps = 1e-09. Fitness at its own constants 1.005 ± 0.047, tuned 1.098 ± 0.060 (23
variants trained).
"""


def train(g, lr, t, m, v, vmax):
    m = interp(g, m, 0.818)
    v = interp(square(g), v, 0.9842)
    vmax = maximum(vmax, v)
    mhat = m / (1 - 0.818 ** t)
    return lr * mhat / (sqrt(vmax / (1 - 0.9842 ** t)) + 1e-09), m, v, vmax
