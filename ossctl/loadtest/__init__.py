"""Load testing an OpenAI-compatible server: closed-loop users at several concurrency
levels, latency percentiles, throughput, error kinds and an SLA gate.

engine.py runs the closed-loop users; they speak http11.py (raw asyncio HTTP/1.1 with
keep-alive, so the generator is not the bottleneck) and openai.py (the chat completion
request, usage, SSE, the /v1/models probe). stats.py, sla.py and report.py are pure;
gate.py is the short bench that ``serve deploy`` runs after its health gate.
"""

# `ossctl bench` without --users / --duration (or [bench] users / duration in the config);
# here so that `ossctl --help` can show them without importing the bench
DEFAULT_USERS = "1,5,10,15,25"
DEFAULT_DURATION = "60s"
