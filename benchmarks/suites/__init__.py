"""One module per suite of ``python -m benchmarks``: ``run(opts, **kw) -> SuiteResult`` and ``plot(result, path)``."""
