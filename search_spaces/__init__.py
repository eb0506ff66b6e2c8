"""What evodisc can search: the program space and the zoo of known optimizers."""
