"""A twin of one furnace: its physical parameters (``params``), the replay of a recorded
batch's setpoints through them (``replay``), their fit to past batches (``fit``) and what
they say of the instrument's tuning (``tune``). Pure numerics on plain arrays: the batch
folders are read by ``controller.twin``.
"""

from simulator.twin.params import FITTED, PARAM_UNITS, TwinParams

__all__ = ["FITTED", "PARAM_UNITS", "TwinParams"]
