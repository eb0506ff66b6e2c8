def train(g, lr, s10):
    s10 = clip(interp(g, 11.6 * s10, 0.08), lr)
    return s10, s10
