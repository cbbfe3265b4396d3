"""Reliability harnesses: ``topicwatch soak`` and ``topicwatch chaos``.

Both run the real stack — a private redis-server with append-only on, the three services as
separate processes, a webhook receiver on loopback — publish generated articles and audit what
Redis and the receiver hold afterwards. ``soak`` proves that default settings keep Redis
bounded; ``chaos`` kills services (SIGKILL) and restarts Redis while articles flow, and proves
that nothing is lost or created twice. They sit on the CLI side of the walls (like the
benchmarks): they may import every service, no service imports them.
"""
