"""Privacy: keyed pseudonyms for user ids (:mod:`.pseudonym`), differentially private
aggregate releases (:mod:`.dp` mechanisms over OpenDP, :mod:`.aggregates` the figures,
:mod:`.budget` the per-data-directory privacy budget)."""
