"""Corpus filters: small steps over one story, each keeps it or drops it with a reason.

    pipeline = build_pipeline(load_pack("fi"))
"""
