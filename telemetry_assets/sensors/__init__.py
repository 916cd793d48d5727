"""Sensors: late-data re-materialisation and hourly rollups following their quarters.

The anomaly/alert sensors come with a later issue.
"""

from telemetry_assets.sensors.follow import rollup_1h_follow_sensor
from telemetry_assets.sensors.late_data import build_late_data_sensor

__all__ = ["build_late_data_sensor", "rollup_1h_follow_sensor"]
