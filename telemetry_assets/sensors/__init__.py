"""Sensors: late-data re-materialisation, hourly rollups following their quarters,
anomaly_job after every 15-minute rollup, alert_job whenever the outbox has work due."""

from telemetry_assets.sensors.alerts import build_alert_sensor
from telemetry_assets.sensors.anomaly import build_anomaly_sensor
from telemetry_assets.sensors.follow import rollup_1h_follow_sensor
from telemetry_assets.sensors.late_data import build_late_data_sensor

__all__ = [
    "build_alert_sensor",
    "build_anomaly_sensor",
    "build_late_data_sensor",
    "rollup_1h_follow_sensor",
]
