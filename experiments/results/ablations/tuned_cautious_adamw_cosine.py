"""An ablation for rules that carry a schedule: the tuned Cautious AdamW of
experiments/results/tuned_zoo/tuned_cautious_adamw.py (tools/tune_zoo.py) times the cosine decay
of the genome space's decay gene, 0.5 (1 + cos(π (t - 1) / T)), which reaches 0 at the run's
end. Its constants were tuned without the decay, not with it.
"""


def train(w, g, lr, t, T, m, v):
    m = interp(g, m, 0.9474)
    v = interp(square(g), v, 0.999875)
    mask = relu(sign(m * g))
    mask = mask / maximum(mean(mask), 0.001)
    mhat = m * mask / (1 - 0.9474 ** t)
    vhat = v / (1 - 0.999875 ** t)
    update = mhat / (sqrt(vhat) + 1e-07) + 0.1 * w
    decay = 0.5 * (1 + cos(3.141592653589793 * (t - 1) / T))
    return lr * decay * update, m, v
