"""Corpus building: request planning, the offline story grammar, raw shards, and ``build-corpus``.

    from tinylang.corpus.build import BuildOptions, build_corpus
"""
