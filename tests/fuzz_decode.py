"""Fuzz edge.decode.decode_bytes with atheris (libFuzzer): its contract is
that any bytes end as an Image or a DecodeError; anything else is a finding
(libFuzzer writes the input to crash-<sha1> in the working directory).

    make fuzz                     # FUZZ_SECONDS=120 by default
    python tests/fuzz_decode.py -max_total_time=600 [corpus_dir]

The seed corpus (tiny DICOM variants, PNG, JPEG) is made at run time in a
temporary folder, unless a corpus folder is given. Not part of `make test`:
fuzzing finds things by running long, which a test suite must not.
"""
import os
import sys
import tempfile
import warnings

import atheris

with atheris.instrument_imports(include=["edge", "pydicom"]):
    from edge.decode import decode_bytes
    from edge.errors import DecodeError
    from edge.settings import DecodeSettings

# Small limits so tiny seeds pass the size rules and mutations reach the pixel code.
SETTINGS = DecodeSettings(min_side=4, max_side=4096, max_pixels=4_000_000, max_file_mb=8)


def write_seeds(folder: str) -> int:
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    import numpy as np
    from tests.dicom_factory import EncoderUnavailable, write_dicom, write_jpeg, write_png
    px = (np.arange(16 * 16, dtype=np.uint16).reshape(16, 16) * 16)
    variants = [dict(), dict(photometric="MONOCHROME1"), dict(preamble=False), dict(bits_stored=8),
                dict(rescale=(2.0, -100.0), window=(1000, 2000)), dict(voi_lut=list(range(0, 4096, 16))),
                dict(compression="rle"), dict(compression="jpeg2000"), dict(frames=2),
                dict(samples_per_pixel=3)]
    n = 0
    for i, kw in enumerate(variants):
        try:
            write_dicom(os.path.join(folder, "seed%02d.dcm" % i), px, **kw)
            n += 1
        except (EncoderUnavailable, ValueError, RuntimeError):
            continue
    write_png(os.path.join(folder, "seed.png"), (px // 16).astype(np.uint8))
    write_png(os.path.join(folder, "seed16.png"), px, bits=16)
    write_jpeg(os.path.join(folder, "seed.jpg"), (px // 16).astype(np.uint8))
    return n + 3


def test_one_input(data: bytes) -> None:
    try:
        decode_bytes(data, SETTINGS)
    except DecodeError:
        pass


def main() -> None:
    warnings.simplefilter("ignore")   # pydicom warns about every damaged file; only exceptions matter here
    args = [a for a in sys.argv[1:] if a.startswith("-")]
    corpora = [a for a in sys.argv[1:] if not a.startswith("-")]
    if not corpora:
        corpora = [tempfile.mkdtemp(prefix="pneumo-fuzz-corpus-")]
        print("seed corpus: %d files in %s" % (write_seeds(corpora[0]), corpora[0]), flush=True)
    if not any(a.startswith("-max_len") for a in args):
        args.append("-max_len=65536")
    atheris.Setup([sys.argv[0]] + args + corpora, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
