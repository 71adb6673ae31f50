"""Stage 1, data: the task registry and its readers, the data mirror and downloads, split folders."""
