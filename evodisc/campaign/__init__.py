"""Running a discovery campaign: the campaign file (``config``), the directory with its crash-safe
log and checkpoints (``store``), the screen before training (``screen``), the evaluators
(``evaluators``, Ray actors or in-process), the loop (``controller``), starting and resuming
(``run``) and the live display (``progress``)."""
