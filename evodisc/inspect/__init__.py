"""Understanding a program: its SymPy form (``symbolic``), the verified simplification
(``simplify``) and the closest known optimizers (``recognise``)."""
