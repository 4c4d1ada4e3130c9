"""Analytics on historian data: statistics, trends, correlation and forecasts (numpy).

The maths modules (series, stats, trend, correlation, forecast, holt_winters, distributions,
grid) take numpy arrays and do no I/O; `service` reads the historian for one tenant's tags
and decides whether raw samples or rollup buckets feed them.
"""
