"""A twin of the station's own furnace (issue 16): the stretches of past batches it is fitted
to (``stretches``), the fit and whether it can be trusted (``fitting``), the ``[twin]``
section written into a station file (``station_text``) and the figure of measured against
replayed traces (``figure``). The physics and the optimiser are the simulator's
(``simulator.twin``): the twin is the simulator, fitted.
"""
