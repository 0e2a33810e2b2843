"""Word error rate: word-level Levenshtein distance (substitutions + deletions + insertions) over
the number of reference words, after normalising case and punctuation.

Normalisation: lower case; sentence markers (<s>, </s>, <sil>) and fillers in brackets ([noise],
++garbage++) dropped; a pronunciation-variant suffix such as "read(2)" reduced to the word;
every character other than a-z, 0-9 and an inner apostrophe becomes a word boundary.
"""
import re

_MARKERS = re.compile(r"</?s>|<sil>|\[[^\]]*\]|\+\+[^+]*\+\+")
_VARIANT = re.compile(r"\(\d+\)")
_NONWORD = re.compile(r"[^a-z0-9']+")


def normalise(text):
    """Text → list of normalised words."""
    t = _VARIANT.sub("", _MARKERS.sub(" ", text.lower()))
    return [w.strip("'") for w in _NONWORD.sub(" ", t).split() if w.strip("'")]


def edit_distance(ref, hyp):
    """Minimum substitutions + deletions + insertions turning word list ref into hyp."""
    prev = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        cur = [i] + [0] * len(hyp)
        for j, h in enumerate(hyp, 1):
            cur[j] = min(prev[j] + 1,               # deletion
                         cur[j - 1] + 1,            # insertion
                         prev[j - 1] + (r != h))    # substitution or match
        prev = cur
    return prev[-1]


def errors(ref_text, hyp_text):
    """(word errors, reference words) after normalisation."""
    ref, hyp = normalise(ref_text), normalise(hyp_text)
    return edit_distance(ref, hyp), len(ref)


def wer(ref_text, hyp_text):
    """Word error rate in percent (may exceed 100 with many insertions)."""
    e, n = errors(ref_text, hyp_text)
    return 100.0 * e / n if n else (0.0 if e == 0 else float("inf"))
