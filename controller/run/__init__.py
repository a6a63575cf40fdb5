"""Running a batch: the clock, the scan cycle (read, snapshot, interlocks, runner, write,
record), the pure runner and its state, the command queue, and resume after a crash."""
