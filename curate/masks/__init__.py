"""Anatomy and anonymization masks: pure functions, arrays and affines in, uint8 0/1 masks out.

* :mod:`curate.masks.anatomy` — subject foreground (head or any body part).
* :mod:`curate.masks.anonymization` — none / defaced / face_blurred /
  skull_stripped, with a confidence and the mask of removed or altered voxels.
* :mod:`curate.masks.geometry` — RAS reorientation, coarse grid, cut planes.
"""

from curate.masks.anatomy import anatomy_mask
from curate.masks.anonymization import AnonResult, detect_anonymization

__all__ = ["AnonResult", "anatomy_mask", "detect_anonymization"]
