"""Training data: records written by `vasa prepare` (records), the generator's relative motion
space (representation), preparation of talking videos (prepare) and training windows (windows)."""
