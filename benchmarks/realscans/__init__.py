"""Real-scan corpus: a catalogue of public single-subject structural MRI and its builder.

See ``docs/realscans.md``. Nothing fetched is committed; :mod:`.build_corpus` assembles the
scans into a cache directory from installed packages and local repository snapshots.
"""
