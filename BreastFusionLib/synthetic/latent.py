"""The generative model behind the synthetic cohort: one latent malignancy signal per modality.

For a lesion with label y (0 benign, 1 malignant) each modality m (US, CT) draws its own evidence

    s_m = y * separation + N(0, 1),    independent across modalities,

and shows it as an appearance score t_m = Phi(s_m - separation / 2) in (0, 1) that drives the
morphology the images show (shape, margin, orientation, posterior features, density). A model that
reads s_m perfectly from one modality reaches AUC Phi(separation / sqrt 2) (0.885 at the default
1.7, close to the paper's single models); one that reads both reaches Phi(separation) (0.955),
so fusion can genuinely beat either single modality. Simulated readers see s_m plus their own
N(0, reader_noise) error: the US reader reports BI-RADS, the CT reader a probability.
Everything else (lesion size, location, anatomy, overlays) is independent of the label.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.stats import norm

SEPARATION = 1.7
READER_NOISE = 0.6
MALIGNANT_FRACTION = 155 / 436  # the paper's cohort: 281 benign, 155 malignant
BIRADS_CUTS = ((-np.inf, "2"), (-0.2, "3"), (0.35, "4a"), (0.85, "4b"), (1.3, "4c"), (1.9, "5"))
CLOCK_HOURS = np.arange(0.5, 12.01, 0.5)


@dataclass(frozen=True)
class LesionSpec:
    """Everything about one synthetic lesion that both modalities share, plus each one's evidence."""

    case_id: str
    label: int
    us_appearance: float
    ct_appearance: float
    diameter_mm: float
    side: str
    clock_hour: float
    reader_us_birads: str
    reader_ct_probability: float
    seed: int


def _birads(score: float) -> str:
    category = BIRADS_CUTS[0][1]
    for cut, name in BIRADS_CUTS:
        if score >= cut:
            category = name
    return category


def sample_lesions(cases: int, seed: int = 0, malignant_fraction: float = MALIGNANT_FRACTION,
                   separation: float = SEPARATION, reader_noise: float = READER_NOISE) -> list[LesionSpec]:
    """``cases`` lesions with the cohort's class ratio (exact counts, shuffled), deterministic per seed."""
    rng = np.random.default_rng(seed)
    malignant = int(round(cases * malignant_fraction))
    labels = rng.permutation(np.array([1] * malignant + [0] * (cases - malignant)))
    lesions = []
    for index, label in enumerate(labels):
        s_us, s_ct = label * separation + rng.standard_normal(2)
        reader_us, reader_ct = np.array([s_us, s_ct]) + reader_noise * rng.standard_normal(2)
        lesions.append(LesionSpec(
            case_id=f"syn{index:04d}", label=int(label),
            us_appearance=float(norm.cdf(s_us - separation / 2)), ct_appearance=float(norm.cdf(s_ct - separation / 2)),
            diameter_mm=float(rng.uniform(8.0, 25.0)), side=str(rng.choice(["right", "left"])),
            clock_hour=float(rng.choice(CLOCK_HOURS)),
            reader_us_birads=_birads(float(reader_us - separation / 2)),
            reader_ct_probability=round(float(norm.cdf(reader_ct - separation / 2)), 3),
            seed=int(rng.integers(2**31))))
    return lesions
