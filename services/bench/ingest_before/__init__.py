"""Ingest's normalisation as it was before the fast paths (commit 73f476d), frozen.

``topicwatch bench ingest`` times it beside today's ``services.ingest`` in the same run, so the
speed-up is read off one noisy machine at one moment rather than compared across days; and
tests/test_ingest_fastpaths.py checks that today's code gives the very same articles, rejections
and languages as this one on every corpus the project has. Never edit these modules (other than
their imports): they are the yardstick. Delete the package once the comparison stops mattering.
"""
