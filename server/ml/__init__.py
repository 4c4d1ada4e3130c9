"""Anomaly detection: feature windows per device, IsolationForest models, a registry, scoring.

`features`, `forest`, `model` and `monitoring` are numpy and scikit-learn only (no I/O);
`training` fits in a worker thread; `registry` stores model versions and their skops
artifacts; `jobs` runs training in the background with progress; `scorer` scores live samples
from the bus in micro-batches and feeds the alarm engine; `service` is what the API calls.
"""
