"""`python -m models polarity`: the mean chest layout edge/polarity.py tests a
film's grey scale against, from the shared data's chest films, with its
cross-source check.

Each film is decoded and preprocessed as the runtime does it (the
classifier's input), thumbnailed as edge.polarity does (flat borders
trimmed, 16 x 16 blocks, the inner 14 x 14 standardised); the template is
their mean. A film stored inverted (lungs bright: two of the NIH
subset's) correlates negatively with a first template and is left out of the
second. The check: a template from one source (NIH) against every film of the
other (SIIM) and back; the same films inverted give the negated figures.
"""
import glob
import os
from typing import Dict, List

import numpy as np

from edge.decode import decode_file
from edge.errors import DecodeError
from edge.inference.manifest import load_manifest
from edge.polarity import INNER, SIDE, thumbnail
from edge.preprocess import preprocess

OUT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "edge", "polarity_template.py")


def chest_films(data: str) -> Dict[str, List[str]]:
    return {"siim": sorted(glob.glob(os.path.join(data, "siim-ptx-png", "*", "images", "*.png"))
                           + glob.glob(os.path.join(data, "siim-ptx-dicom", "dicom", "*.dcm"))),
            "nih": sorted(glob.glob(os.path.join(data, "nih-cxr14-subset", "images", "*.png")))}


def thumbnails(paths: List[str], classifier: str) -> np.ndarray:
    spec = load_manifest(classifier).preprocessing
    out = []
    for path in paths:
        try:
            out.append(thumbnail(preprocess(decode_file(path).pixels, spec)[0]))
        except DecodeError as exc:
            print("skipped %s: %s" % (os.path.basename(path), exc))
    return np.array(out)


def mean_template(thumbs: np.ndarray) -> np.ndarray:
    def standard(t):
        return (t - t.mean()) / t.std()
    first = standard(thumbs.mean(0))
    upright = thumbs[thumbs @ first / first.size >= 0]       # films stored inverted left out
    return standard(upright.mean(0))


def summary(corr: np.ndarray) -> str:
    return "n %d, min %.3f, 1st pct %.3f, 5th pct %.3f, median %.3f, below 0: %d" % (
        len(corr), corr.min(), np.percentile(corr, 1), np.percentile(corr, 5), np.median(corr), int((corr < 0).sum()))


def run(data: str, classifier: str, write: bool) -> np.ndarray:
    films = chest_films(data)
    thumbs = {k: thumbnails(v, classifier) for k, v in films.items()}
    for a, b in (("nih", "siim"), ("siim", "nih")):
        t = mean_template(thumbs[a])
        print("template from %s, films of %s: %s" % (a, b, summary(thumbs[b] @ t / t.size)))
    template = mean_template(np.concatenate(list(thumbs.values())))
    for k, v in thumbs.items():
        print("shipped template, %s (in its making): %s" % (k, summary(v @ template / template.size)))
    if write:
        rows = ",\n".join("    " + ", ".join("%.3f" % v for v in row) for row in template.reshape(INNER, INNER))
        with open(OUT, "w") as fh:
            fh.write('"""Written by `python -m models polarity` (models/polarity.py): the mean layout\n'
                     '(inner %d x %d of %d x %d blocks) of the shared data\'s %d chest films as the\n'
                     'classifier sees them (standardised; films stored inverted left out). Not\n'
                     'patient data: an average."""\n'
                     'TEMPLATE = (\n%s,\n)\n' % (INNER, INNER, SIDE, SIDE, sum(len(v) for v in thumbs.values()), rows))
        print("wrote", OUT)
    return template
