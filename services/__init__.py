"""topicwatch: ingest -> classify -> notify over Redis Streams."""

__version__ = "0.1.0"
