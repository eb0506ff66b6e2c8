def train(g, lr, m, v, s9):
    m = interp(g, m, 0.81)
    v = interp(square(g), v, 0.9999023)
    update = interp(m, s9, 0.000975) / (sqrt(v) + 1.12e-06) + g
    return lr * update, m, v, g
