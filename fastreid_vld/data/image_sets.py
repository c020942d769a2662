"""fast-reid's own image data sets (Market1501, DukeMTMC, MSMT17, ...) read from DATASETS.ROOT, with a
missing folder as one error that names it."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator

from fastreid.data import build as fastreid_build

from .datasets import DatasetFormatError

__all__ = ["image_sets_under"]


@contextlib.contextmanager
def image_sets_under(root: str, names: str) -> Iterator[None]:
    """Within this block fast-reid's loader builders find the image data sets ``names`` (for the
    error) under ``root`` (DATASETS.ROOT): fast-reid reads its root once, from FASTREID_DATASETS, when
    ``fastreid.data.build`` is imported (DATASETS.ROOT defaults to that variable), and reports a
    missing folder as a bare ``RuntimeError('"datasets/bounding_box_train" is not found')``."""
    imported_root, fastreid_build._root = fastreid_build._root, root
    try:
        yield
    except RuntimeError as error:
        missing = re.fullmatch(r'"(.+)" is not found', str(error))
        if missing is None:
            raise
        raise DatasetFormatError(missing.group(1), f"the folder of fast-reid's {names} layout under "
                                 f"DATASETS.ROOT ({root})", found="nothing (missing)") from None
    finally:
        fastreid_build._root = imported_root
