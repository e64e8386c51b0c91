"""The benchmarks: each prints ratios against a baseline measured in the same run.

Run one from the project root as a module, `.venv/bin/python -m benchmarks.NAME --help`
(admission, http, projections); the shared harness is `benchmarks.harness`.
"""
