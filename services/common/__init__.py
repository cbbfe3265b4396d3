"""What ingest, classify and notify share: settings, event contracts, streams, Redis plumbing."""
