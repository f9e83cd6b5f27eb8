"""BreastFusionLib: the Slicer-free core of BreastFusion.

Benign vs malignant breast masses from ultrasound (US), chest CT, or both fused.
Research use only; not a medical device.

Coordinate conventions used everywhere in this package:
- Patient coordinates are RAS millimetres, as in 3D Slicer (+x = patient right, +y = anterior,
  +z = superior).
- A CT volume is a numpy array indexed ``[k, j, i]`` (slice, row, column), exactly what
  ``slicer.util.arrayFromVolume`` returns, plus a 4x4 ``ijk_to_ras`` matrix (see ``ct.volume``).
"""

__version__ = "0.1.0"
