"""SqliteStore.scan_points (the protocol's plain scan): the same points as
read_points, in any order, with rewrites resolved and the range half-open."""

from __future__ import annotations

from telemetry_core.store.sqlite import SqliteStore
from tests.assets.rollup_helpers import fleet_points, ns

START = ns("2026-11-20T06:00:00Z")
ORDER = ["time", "measurement", "site_id", "device_id", "field"]


def test_scan_points_equals_read_points(tmp_path):
    store = SqliteStore(str(tmp_path / "t.db"))
    points = fleet_points(START, 2)
    store.write_points(points)
    rewrite = [(*points[3][:5], 9999.5)]  # a later write of one identity replaces its value
    store.write_points(rewrite, seqs=[10])
    for a, b in [
        (START, START + 2 * 3600 * 10**9),
        (START + 900 * 10**9, START + 1800 * 10**9),  # half-open: 06:30 not included
        (START - 10**9, START),  # empty
    ]:
        scanned = store.scan_points(a, b)
        assert scanned.schema == store.read_points(a, b).schema
        assert scanned.sort(ORDER).equals(store.read_points(a, b))
        assert scanned.height == sum(a <= p[4] < b for p in points)
    scanned = store.scan_points(START, START + 2 * 3600 * 10**9)
    row = scanned.filter(
        (scanned["time"] == points[3][4])
        & (scanned["device_id"] == points[3][2])
        & (scanned["field"] == points[3][3])
    )
    assert row["value"].to_list() == [9999.5]
    store.close()
