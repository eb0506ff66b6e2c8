"""adabelief with its named constants tuned on the search suite digits_mlp, markov_lm,
teacher_student, ill_conditioned (seeds 0, 1, 2; tools/tune_zoo.py): beta1 = 0.692, beta2 =
0.99975, eps = 1e-17. Fitness at its own constants 1.044 ± 0.050, tuned 1.124 ± 0.066 (24
variants trained).
"""


def train(g, lr, t, m, s):
    m = interp(g, m, 0.692)
    s = interp(square(g - m), s, 0.99975) + 1e-17
    mhat = m / (1 - 0.692 ** t)
    shat = s / (1 - 0.99975 ** t)
    return lr * mhat / (sqrt(shat) + 1e-17), m, s
