"""Registry of synthetic corpus generators, chosen by a recipe's ``synth.generator`` key.

Each entry is the generator's config class (a dataclass whose fields are the recipe's
``synth.params``, checked like any registry parameters) with a ``generate`` attribute::

    generate(outdir, cfg, nj=1, progress=True) -> Path

that writes the corpus in the recipe's raw layout, exactly like the real download, plus a
``.complete`` marker written last. Stage 0 generates a recipe's synthetic corpus when no
``--datadir`` is given.
"""

from __future__ import annotations

from sed.data import birdclef_synth, detector_synth
from sed.data.synth import SynthConfig, generate
from sed.registry import Registry

GENERATORS: Registry[type] = Registry("synthetic corpus generator")

# the Kaggle Rainforest Connection layout: train/ test/ FLAC, train_tp.csv, train_fp.csv ...
GENERATORS.register("rfcx", SynthConfig, generate=generate)
# the Kaggle BirdCLEF layout of one year (2021-2025): train_audio/ (2021 train_short_audio/), ...
GENERATORS.register(
    "birdclef", birdclef_synth.BirdclefSynthConfig, generate=birdclef_synth.generate
)
# the detector layout (egs/detector): clips/<label>/, clips/negative/, long/ of one target species
GENERATORS.register(
    "detector", detector_synth.DetectorSynthConfig, generate=detector_synth.generate
)
