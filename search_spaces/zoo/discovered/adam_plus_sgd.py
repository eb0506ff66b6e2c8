"""Adam plus SGD with a long, uncorrected second moment: the best rule of the Lion-style
warm-start campaign (experiments/lion_search.toml), kept as a warm start and a reference; no
discovery.

Campaign: experiments/lion_search.toml (AdamW warm start, regularized evolution with restarts,
the funnel, constant tuning), budget 2 hours of campaign time on one CPU core (18,282
candidates), selected by its selection stage: fitness 1.187 ± 0.046 on 8 seeds (1.0 = AdamW with
a tuned learning rate; search fitness 1.198 ± 0.071 on 3), candidate 16627. Its own constant
tuning (evodisc tune) changed nothing. On seeds no search saw (8-15) it scores 1.160 ± 0.041,
0.933 ± 0.032 of the best zoo optimizer with tuned constants (Cautious AdamW); the held-out
tasks: against the tuned Cautious AdamW 0.987 ± 0.044 (anytime metric) and 1.013 ± 0.058
(final), 1.064 ± 0.050 of AdamW at its own constants (geometric means over the 7 held-out tasks,
5 seeds; docs/discoveries.md).

The rule: Adam's momentum (beta 0.81) over the root of a second moment with beta2 = 0.9999 and
no bias correction, plus the plain gradient. Uncorrected, sqrt(v_t) ~ sqrt(1 - beta2^t) * rms(g)
is small early, so the Adam term starts large and decays like 1/sqrt(t) over a short run (an
implicit schedule), while the SGD term keeps a floor. The 0.000975 share of the previous
gradient in the numerator is left as found.
"""


def train(g, lr, m, v, s9):
    m = interp(g, m, 0.81)
    v = interp(square(g), v, 0.9999023)
    update = interp(m, s9, 0.000975) / (sqrt(v) + 1.12e-06) + g
    return lr * update, m, v, g
