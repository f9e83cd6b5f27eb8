"""A realistic synthetic paired US + chest-CT cohort: the demo's and the tests' default data.

``python -m BreastFusionLib.synthetic --cases N --out DIR [--seed S] [--dicom]``. The generative
model is in ``latent`` (one noisy malignancy signal per modality), the images in ``ultrasound``
and ``chest_ct``; ``docs/SYNTHETIC.md`` describes the knobs and shows examples.
"""

from BreastFusionLib.synthetic.cohort import generate_cohort

__all__ = ["generate_cohort"]
