"""Generic oxygen analyser behind a Modbus analogue-input module, as data.

MODEL ASSUMPTION: no vendor map is cited in reference/hardware.md, so this is the plainest
layout a 4-20 mA O2 transmitter on a Modbus I/O module offers: the reading as a big-endian
float in ppm and a status word (bit 0 = sensor fault). Replace with the vendor's map.
"""

from __future__ import annotations

from typing import Final

from drivers.registers import Access, DType, Register, RegisterMap

__all__ = ["MAP", "MODEL", "O2_PPM", "STATUS"]

MODEL: Final = "o2-analyser"
O2_PPM: Final = Register("O2", 0, DType.FLOAT32, unit="ppm", access=Access.RO,
                         doc="O2 concentration, MODEL ASSUMPTION (generic AI module)")
STATUS: Final = Register("STATUS", 2, DType.UINT16, access=Access.RO,
                         doc="bit 0 sensor fault, MODEL ASSUMPTION (generic AI module)")
MAP: Final = RegisterMap(MODEL, (O2_PPM, STATUS))
