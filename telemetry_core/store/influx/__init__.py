"""InfluxDB stores: ``influxdb://`` (the v1-compatible API) and ``influxdb2://``
(influxdb-client). ``open.py`` parses the URLs and documents the data layout."""

from telemetry_core.store.influx.open import open_influx

__all__ = ["open_influx"]
