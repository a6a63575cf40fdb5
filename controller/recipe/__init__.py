"""What to run and where: the recipe and station files, their one-line validation errors,
and the compiled plan of steps. Pure: no I/O beyond reading the files, no clock."""
