"""Is this a chest radiograph? Pure checks; the pipeline raises
NotAChestRadiograph (code `not_a_chest_radiograph`) when one fails.

Two gates:
- the DICOM header: BodyPartExamined, where a modality wrote one, must name
  the chest (an extremity CR is a radiograph the models must never read);
- the image itself: the classifier exports, beside its logit, two
  Mahalanobis distances from the training chest films (mean squared whitened
  component, about 1 for a typical chest film): of the pooled features of
  a frozen ImageNet encoder it carries for the gate (bundled models 0.4.0;
  the trained encoder's features drift with fine-tuning), and of its input
  block-averaged to a 16 x 16 thumbnail (the layout: where it is bright and
  dark). Above the manifest's
  `thresholds.ood_max` or `thresholds.layout_max` the film is refused. The
  features catch textures (photographs, other body parts, DICOMs that claim
  CHEST but are not); the layout catches a picture shaped unlike a chest
  film whose textures happen to pass.
"""
from typing import Optional

from edge.decode.checks import code_string, shown_value
from edge.errors import InvertedGreyscale, NotAChestRadiograph

# The classifier manifest's thresholds that switch the learned gate on (edge/postprocess.py
# resolve_thresholds reads them; the bench drops them for generated phantoms).
LEARNED_LIMITS = ("ood_max", "layout_max", "polarity_min")

# BodyPartExamined values that name or include the chest (DICOM PS3.16 CID 4031
# code meanings as modalities write them; compared upper-cased, letters and digits only).
CHEST_BODY_PARTS = frozenset(("CHEST", "THORAX", "LUNG", "LUNGS", "CHESTABDOMEN", "CHESTABDOMENPELVIS",
                              "THORAXABDOMEN", "RIB", "RIBS", "PORTABLECHEST", "CHESTPA", "CHESTAP"))

# Other BodyPartExamined terms (CID 4031 as modalities write them) that a refusal may quote.
BODY_PARTS = frozenset((
    "ABDOMEN ANKLE ARM BRAIN BREAST CALCANEUS CLAVICLE COCCYX CSPINE ELBOW EXTREMITY FACE FEMUR FINGER "
    "FOOT FOREARM HAND HEAD HEADNECK HEART HIP HUMERUS JAW KNEE LEG LSPINE MANDIBLE NECK ORBIT PATELLA "
    "PELVIS SACRUM SCAPULA SHOULDER SINUS SKULL SPINE SSPINE TIBIA TMJ TOE TSPINE WHOLEBODY WRIST "
    "ABDOMENPELVIS LOWEREXTREMITY UPPEREXTREMITY").split()) | CHEST_BODY_PARTS   # letters and digits only


def _norm(value: str) -> str:
    return "".join(ch for ch in value.upper() if ch.isalnum())


def body_part_is_chest(body_part: Optional[str]) -> Optional[bool]:
    """True / False from the tag, None when absent or blank (no verdict)."""
    if body_part is None or not body_part.strip():
        return None
    return _norm(body_part) in CHEST_BODY_PARTS


def check_body_part(body_part: Optional[str]) -> None:
    """Refuse a DICOM whose BodyPartExamined names something other than the chest."""
    if body_part_is_chest(body_part) is False:
        # Quoted only when it is one of the standard's terms: a damaged element length
        # can make the value run on into the patient's name, and a hand-typed one can be it.
        raise NotAChestRadiograph("DICOM BodyPartExamined is %s, not the chest: the models read only "
                                  "frontal chest radiographs" % _shown_body_part(body_part))


def _shown_body_part(value: str) -> str:
    """The term its letters and digits spell (as written when that is a plain
    code string: "WHOLE BODY"), else described: symbols around a term
    ("HAND" and a name in circled letters) are never quoted."""
    if _norm(value) not in BODY_PARTS:
        return shown_value(value, frozenset())
    return code_string(value) or _norm(value)


def check_ood(distance: Optional[float], ood_max: Optional[float], what: str = "feature") -> None:
    """Refuse an image whose `what` distance from the training chest films exceeds ood_max."""
    if distance is None or ood_max is None:
        return
    if not distance <= ood_max:      # NaN refuses too
        raise NotAChestRadiograph("the image does not look like a chest radiograph (%s distance %.1f "
                                  "> %.1f, the most any training chest film reached with margin)"
                                  % (what, distance, ood_max))


def check_polarity(correlation: float, polarity_min: Optional[float]) -> None:
    """Refuse a film whose layout correlates with the mean chest film's below
    polarity_min (edge/polarity.py): its grey scale is inverted."""
    if polarity_min is None:
        return
    if not correlation >= polarity_min:      # NaN refuses too
        raise InvertedGreyscale(
            "the film's grey scale looks inverted (lungs bright, spine dark: correlation %.2f with the mean "
            "chest film, below %.2f): a MONOCHROME1 film labelled MONOCHROME2, a negative RescaleSlope or an "
            "inverted export; the models would misread it. Send it the right way round"
            % (correlation, polarity_min))
