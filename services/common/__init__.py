"""What ingest, classify and notify share: settings, event contracts, streams, Redis plumbing."""

from services.common.cancellation import patch_redis

# Before any connection opens: a cancelled task must not carry on (see cancellation.py).
patch_redis()
