"""Load testing an OpenAI-compatible server: closed-loop users at several concurrency
levels, latency percentiles, throughput, error kinds and an SLA gate.

engine.py sends the requests (raw asyncio HTTP/1.1 with keep-alive, so the generator is
not the bottleneck); stats.py, sla.py and report.py are pure; gate.py is the short bench
that ``serve deploy`` runs after its health gate.
"""
