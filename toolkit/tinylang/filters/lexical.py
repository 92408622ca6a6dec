"""Filters about words and languages: language ID, dictionary coverage, vocabulary adherence.

Language ID alone passes code-mixed text: a Finnish story with a few English sentences is still
"fi". Dictionary coverage (the share of words the lemmatiser knows in the pack's language) catches
it, and vocabulary adherence (the share of content lemmas inside the restricted vocabulary) keeps
stories to a child's words.

    lemmatiser = make_lemmatiser("fi", "simplemma")
    Vocabulary(pack, lemmatiser, min_adherence=0.8).check(story)
"""

from __future__ import annotations

from .base import Filter, Story, Verdict, drop, keep
from .langid import FastLangDetect


class Lemmatiser:
    """Word -> (known to the dictionary, candidate lemmas); answers are cached per word."""

    name = "lemmatiser"

    def __init__(self) -> None:
        self._cache: dict[str, tuple[bool, tuple[str, ...]]] = {}

    def analyse(self, word: str) -> tuple[bool, tuple[str, ...]]:
        found = self._cache.get(word)
        if found is None:
            found = self._cache[word] = self._analyse(word)
        return found

    def is_form_of(self, word: str, lemma: str) -> bool:
        """Whether lowercase ``word`` is ``lemma`` itself or one of its forms (koiran -> koira)."""
        return word == lemma or lemma in self.analyse(word)[1]

    def _analyse(self, word: str) -> tuple[bool, tuple[str, ...]]:  # pragma: no cover - interface
        raise NotImplementedError


class SimplemmaLemmatiser(Lemmatiser):
    name = "simplemma"

    def __init__(self, lang: str) -> None:
        super().__init__()
        import simplemma

        try:  # an unknown language fails here, at set-up, not after a build has paid for its stories
            simplemma.lemmatize("a", lang=lang)
        except ValueError:
            raise ValueError(f"simplemma has no dictionary for {lang!r}: set filters.lemmatiser to none in "
                             "pack.yaml (words are then compared as written), or filters.language to a "
                             "language it knows") from None
        self.lang = lang
        self._simplemma = simplemma

    def _analyse(self, word: str) -> tuple[bool, tuple[str, ...]]:
        lemma = self._simplemma.lemmatize(word, lang=self.lang)
        known = self._simplemma.is_known(word, lang=self.lang) or self._simplemma.is_known(lemma, lang=self.lang)
        return known, (lemma.lower(),)


class VoikkoLemmatiser(Lemmatiser):
    """Finnish morphology from Voikko: every base form of every analysis (more precise than simplemma)."""

    name = "voikko"

    def __init__(self, lang: str = "fi") -> None:
        super().__init__()
        import libvoikko

        self._voikko = libvoikko.Voikko(lang)

    def _analyse(self, word: str) -> tuple[bool, tuple[str, ...]]:
        analyses = self._voikko.analyze(word)
        lemmas = tuple(dict.fromkeys(a["BASEFORM"].lower() for a in analyses if "BASEFORM" in a))
        return bool(analyses), lemmas or (word.lower(),)


class WrittenForms(Lemmatiser):
    """No lemmatiser, for a language none supports (Sámi in simplemma): every word is its own lemma
    and counts as known. Dictionary coverage then measures nothing, and the vocabulary must list the
    forms stories use, not only lemmas."""

    name = "none"

    def _analyse(self, word: str) -> tuple[bool, tuple[str, ...]]:
        return True, (word.lower(),)


LEMMATISERS = ("simplemma", "voikko", "none")


def make_lemmatiser(lang: str, backend: str) -> Lemmatiser:
    if backend == "voikko":
        return VoikkoLemmatiser(lang)
    if backend == "simplemma":
        return SimplemmaLemmatiser(lang)
    if backend == "none":
        return WrittenForms()
    raise ValueError(f"unknown lemmatiser {backend!r} ({', '.join(LEMMATISERS)})")


class Language(Filter):
    """langdetect's answer (through the identical, faster engine), seeded so results repeat.
    ``expected=None`` (a pack with ``language_id: false``) keeps every story unexamined."""

    name = "language"

    def __init__(self, expected: str | None, min_probability: float = 0.9, seed: int = 0) -> None:
        self.expected = expected
        self.min_probability = min_probability
        self.detector = FastLangDetect(seed) if expected is not None else None

    def prepare(self, stories: list[Story]) -> None:
        if self.expected is None:
            return
        for story, found in zip(stories, self.detector.detect_batch([s.text for s in stories])):
            story.notes["_langs"] = found

    def check(self, story: Story) -> Verdict:
        if self.expected is None:
            return keep(None, "language ID off for this pack")
        found = story.notes.pop("_langs", None)
        if found is None:
            found = self.detector.detect_langs(story.text)
        if not found:
            return drop("language", "no language detected", 0.0)
        top, probability = found[0]
        story.notes["language"] = [top, round(probability, 4)]
        shown = ", ".join(f"{lang} {p:.2f}" for lang, p in found[:3])
        if top != self.expected:
            return drop("language", f"detected {shown}; expected {self.expected}", probability if top == self.expected else 0.0)
        if probability < self.min_probability:
            return drop("language", f"{self.expected} only {probability:.2f} < {self.min_probability} ({shown})", probability)
        return keep(probability, shown)


class DictionaryCoverage(Filter):
    """Share of words the lemmatiser knows for the pack's language: English in Finnish shows here."""

    name = "dictionary"

    def __init__(self, lemmatiser: Lemmatiser, min_coverage: float, names: frozenset[str] = frozenset()) -> None:
        self.lemmatiser = lemmatiser
        self.min_coverage = min_coverage
        self.names = names

    def check(self, story: Story) -> Verdict:
        words = [(w, lower) for w, lower in zip(story.words, story.lower_words) if lower not in self.names]
        if not words:
            return keep(1.0)
        analyse = self.lemmatiser.analyse
        unknown = [w for w, lower in words if not analyse(lower)[0]]
        coverage = 1 - len(unknown) / len(words)
        if coverage < self.min_coverage:
            shown = ", ".join(sorted(set(unknown))[:10])
            return drop("dictionary", f"coverage {coverage:.2f} < {self.min_coverage} (unknown: {shown})", coverage)
        return keep(coverage, f"coverage {coverage:.2f}")


class Vocabulary(Filter):
    """Share of content words whose lemma is in the restricted vocabulary (or always allowed).

    A word is allowed when its form or one of its lemmas is; in compounding languages also when
    it splits into allowed parts (*lumi+ukko*, with a genitive first part like *auringon+kukka*).
    Out-of-vocabulary lemmas are noted on kept stories too, so the vocabulary can be grown."""

    name = "vocabulary"

    def __init__(self, vocabulary: frozenset[str], function_words: frozenset[str], lemmatiser: Lemmatiser,
                 min_adherence: float, compounds: bool = False) -> None:
        self.vocabulary = vocabulary
        self.function_words = function_words
        self.lemmatiser = lemmatiser
        self.min_adherence = min_adherence
        self.compounds = compounds
        self._allowed_cache: dict[str, tuple[bool, bool, str]] = {}

    def _is_part(self, part: str) -> bool:
        if part in self.vocabulary:
            return True
        return any(lemma in self.vocabulary for lemma in self.lemmatiser.analyse(part)[1])

    def _splits(self, lemma: str, depth: int = 0) -> bool:
        for cut in range(3, len(lemma) - 2):
            head, tail = lemma[:cut], lemma[cut:]
            head_ok = self._is_part(head) or (head.endswith("n") and self._is_part(head[:-1]))
            if head_ok and (tail in self.vocabulary or (depth < 1 and self._splits(tail, depth + 1))):
                return True
        return False

    def judge(self, word: str) -> tuple[bool, bool, str]:
        """(content word?, allowed?, lemma to report) for a lowercase word, cached."""
        cached = self._allowed_cache.get(word)
        if cached is None:
            lemmas = self.lemmatiser.analyse(word)[1]
            content = word not in self.function_words and not (set(lemmas) & self.function_words)
            allowed = (word in self.vocabulary or any(lemma in self.vocabulary for lemma in lemmas)
                       or (self.compounds and len(word) > 5 and any(self._splits(lemma) for lemma in lemmas)))
            cached = self._allowed_cache[word] = (content, allowed, lemmas[0])
        return cached

    def check(self, story: Story) -> Verdict:
        judged = [self.judge(w) for w in story.lower_words]
        content = [j for j in judged if j[0]]
        if not content:
            return keep(1.0)
        outside = [j for j in content if not j[1]]
        adherence = 1 - len(outside) / len(content)
        oov = sorted({j[2] for j in outside})
        story.notes["vocabulary_adherence"] = round(adherence, 4)
        story.notes["oov"] = oov
        if adherence < self.min_adherence:
            return drop("vocabulary", f"adherence {adherence:.2f} < {self.min_adherence} (outside: {', '.join(oov[:10])})", adherence)
        return keep(adherence, f"adherence {adherence:.2f}; outside: {', '.join(oov[:10]) or 'none'}")
