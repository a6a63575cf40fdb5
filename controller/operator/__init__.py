"""The people at and away from the furnace: the live view, keys and signals, the control
port (`furnace ctl`), and the one-controller-per-furnace lock."""
