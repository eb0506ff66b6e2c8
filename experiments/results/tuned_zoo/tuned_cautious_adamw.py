"""cautious_adamw with its named constants tuned on the search suite digits_mlp, markov_lm,
teacher_student, ill_conditioned (seeds 0, 1, 2; tools/tune_zoo.py): beta1 = 0.9474, beta2 =
0.999875, eps = 1e-07, weight_decay = 0.1, c1 = 0.001. Fitness at its own constants 1.183 ±
0.086, tuned 1.249 ± 0.089 (42 variants trained).
"""


def train(w, g, lr, t, m, v):
    m = interp(g, m, 0.9474)
    v = interp(square(g), v, 0.999875)
    mask = relu(sign(m * g))
    mask = mask / maximum(mean(mask), 0.001)
    mhat = m * mask / (1 - 0.9474 ** t)
    vhat = v / (1 - 0.999875 ** t)
    update = mhat / (sqrt(vhat) + 1e-07) + 0.1 * w
    return update * lr, m, v
