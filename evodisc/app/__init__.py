"""The application: the command line (``cli``), a campaign's report (``report``, ``plots``) and
replaying a program against baselines on any task (``replay``)."""
