"""Minimal text: free text (searches, reviews) kept only as the keywords a profile derives.

A profile reads an event's text as a bag of words (River's ``BagOfWords``, as
:class:`engine.shard.ProfileShard` does); :func:`keywords_only` turns the text into that bag,
written as its words in alphabetical order, each repeated by its count. The shard derives
the same keyword interests from it as from the original, so a replay of the log rebuilds
the profile exactly, but the sentence, its word order, its punctuation and its one-letter
words are gone.
"""

from __future__ import annotations

from river import feature_extraction

_BOW = feature_extraction.BagOfWords()


def keywords_only(text: str) -> str:
    """The bag of words of ``text``, as text the bag of words reads back unchanged.

    Examples
    --------
    >>> keywords_only("Cheap flights to Paris, cheap hotels in Paris!")
    'cheap cheap flights hotels in paris paris to'
    >>> words = _BOW.transform_one
    >>> words(keywords_only("Où est la Gare?")) == words("Où est la Gare?")
    True
    """
    bag = _BOW.transform_one(text)
    return " ".join(word for word in sorted(bag) for _ in range(bag[word]))


def for_storage(events: list, pseudonyms, keep_text: bool) -> list:
    """Validated events as they may be stored: user ids as pseudonyms (``pseudonyms``: a
    :class:`~engine.privacy.pseudonym.Pseudonyms`, or None for raw ids), text as its
    keywords unless ``keep_text``. Changes the events in place (the validator's copies)."""
    if pseudonyms is None and keep_text:
        return events
    for e in events:
        if pseudonyms is not None:
            e.user_id = pseudonyms(e.user_id)
        if not keep_text and e.text:
            e.text = keywords_only(e.text)
    return events
