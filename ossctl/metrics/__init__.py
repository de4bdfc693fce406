"""``ossctl metrics``: one Prometheus endpoint for GPUs (NVML), the releases serving on a
Docker engine, their llama-server's own ``/metrics`` and ``/slots``, and the last bench
result per profile.

- :mod:`ossctl.metrics.families`: PURE: facts in, metric families (plain data) out.
- :mod:`ossctl.metrics.exporter`: one scrape: asks every source, with deadlines, and
  turns failures into error series instead of a failed scrape.
- :mod:`ossctl.metrics.promclient`: ONLY importer of ``prometheus_client`` (text format,
  parsing llama-server's exposition, the HTTP server).
"""
