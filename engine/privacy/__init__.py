"""Privacy by design.

- :mod:`.pseudonym`: keyed pseudonyms of user ids (the key outside the data directory);
  :mod:`.rekey` moves a directory to a new key;
- :mod:`.minimal`: free text stored as the keywords a profile derives from it;
- :mod:`.retention`: events, decisions and rewards kept for ``retention_days``;
- :mod:`.erase`: what erasure needs beyond deleting rows (items only the user touched, a
  WAL truncation that is checked and retried);
- :mod:`.dp` (mechanisms over OpenDP), :mod:`.aggregates` (the figures) and :mod:`.budget`
  (the per-directory privacy budget): differentially private releases. They live in the
  engine, not in ``experiments``, because the HTTP face (``GET /v1/aggregates``) serves them.
"""
