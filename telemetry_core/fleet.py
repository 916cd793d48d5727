"""A simulated building fleet: realistic readings as (subject, payload, headers).

Pure and seeded (no NATS here), so the simulator, tests and benchmarks share one
generator and a run is reproducible. Device types per site, in turn:

* energy meters  ``iot.energy.<site>.meter-N``     power_w (gauge), energy_kwh (delta)
* occupancy      ``iot.occupancy.<site>.area-N``   occupied (state), people (gauge)
* HVAC zones     ``iot.hvac.<site>.zone-N``        temperature_c, setpoint_c (gauges)
* emergency lights ``iot.lighting.<site>.emlight-N`` lamp_ok (state), battery_pct (gauge)

Optionally, :class:`Spikes` makes one energy meter at a time draw 6-8 kW for a few
seconds: the occasional spike that the demo's ``power-high`` threshold (5 kW) catches.
The normal load never reaches it (at most 1.5 x 2.8 kW x 1.1 = 4.6 kW).
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator
from dataclasses import dataclass

import msgspec

from telemetry_core.subjects import subject_for
from telemetry_core.timeutil import NS

KINDS = (("energy", "meter"), ("occupancy", "area"), ("hvac", "zone"), ("lighting", "emlight"))
FIELD_KINDS = {
    "energy.power_w": "gauge",
    "energy.energy_kwh": "delta",
    "occupancy.occupied": "state",
    "occupancy.people": "gauge",
    "hvac.temperature_c": "gauge",
    "hvac.setpoint_c": "gauge",
    "lighting.lamp_ok": "state",
    "lighting.battery_pct": "gauge",
}
_encode = msgspec.json.Encoder().encode


@dataclass(frozen=True)
class Device:
    measurement: str
    site_id: str
    device_id: str
    phase: float
    scale: float

    @property
    def subject(self) -> str:
        return subject_for(self.measurement, self.site_id, self.device_id)


@dataclass
class Message:
    subject: str
    payload: bytes
    headers: dict[str, str]
    readings: int  # valid readings inside (0 for a deliberately invalid message)
    kind: str = "good"  # good | late | duplicate | invalid


def _daily(t_ns: int, phase: float) -> float:
    """0..1 activity: low at night, high in the afternoon (UTC, shifted per device)."""
    hours = (t_ns / NS / 3600.0 + phase) % 24
    return 0.5 - 0.5 * math.cos((hours - 3) / 24 * 2 * math.pi)


SPIKE_W = (6000.0, 8000.0)  # a spike's power draw: above the demo's 5 kW threshold


@dataclass(frozen=True)
class Spikes:
    """Every ``every_s`` seconds one energy meter, in turn, draws 6-8 kW for ``length_s``
    seconds (a chiller starting, a short circuit). The first spike starts ``first_s``
    after ``start_ns``, so a demo shows an alert in its first minute; the meters take
    turns, so each spike is a new alert key (no cooldown swallows it)."""

    start_ns: int
    every_s: float
    length_s: float = 10.0
    first_s: float = 15.0

    def meter(self, t_ns: int, meters: int) -> int | None:
        """Index among ``meters`` energy meters of the one spiking at ``t_ns``, if any."""
        offset = (t_ns - self.start_ns) / NS - self.first_s
        if offset < 0 or meters == 0:
            return None
        k, into = divmod(offset, self.every_s)
        return int(k) % meters if into < self.length_s else None


def reading(
    device: Device, t_ns: int, interval_s: float, rng: random.Random, *, spike: bool = False
) -> dict[str, float]:
    act = _daily(t_ns, device.phase)
    if device.measurement == "energy":
        if spike:  # one draw either way: a spike does not shift the rest of the sequence
            power = rng.uniform(*SPIKE_W)
        else:
            power = device.scale * (300 + 2500 * act) * rng.uniform(0.9, 1.1)
        return {"power_w": round(power, 2), "energy_kwh": round(power * interval_s / 3.6e6, 6)}
    if device.measurement == "occupancy":
        people = max(0, round(rng.gauss(12 * act * device.scale, 1.5)))
        return {"occupied": people > 0, "people": people}
    if device.measurement == "hvac":
        setpoint = 21.0 if act > 0.3 else 17.0
        return {"temperature_c": round(setpoint + rng.gauss(0.4, 0.6), 2), "setpoint_c": setpoint}
    lamp_ok = rng.random() > 0.002
    return {"lamp_ok": lamp_ok, "battery_pct": round(min(100, 95 + rng.gauss(2, 2)), 1)}


INVALID = (
    lambda t: b"\x00not json at all",
    lambda t: _encode({"timestamp": t, "power_w": "four hundred"}),
    lambda t: _encode({"power_w": 1.0}),
    lambda t: b'{"timestamp": %d, "power_w": NaN}' % t,
    lambda t: _encode({"timestamp": t}),
    lambda t: _encode({"timestamp": t, "site_id": "someone-else", "power_w": 1.0}),
    lambda t: _encode({"timestamp": t + 3600 * NS, "power_w": 1.0}),
    lambda t: _encode({"timestamp": t, "bad field!": 1.0}),
)


class Fleet:
    def __init__(self, sites: int = 3, devices: int = 12, *, seed: int = 1) -> None:
        self.rng = random.Random(seed)
        self.devices: list[Device] = []
        for s in range(sites):
            site = f"site-{chr(ord('a') + s)}" if sites <= 26 else f"site-{s:03d}"
            for d in range(devices):
                measurement, prefix = KINDS[d % len(KINDS)]
                self.devices.append(
                    Device(
                        measurement,
                        site,
                        f"{prefix}-{d // len(KINDS) + 1}",
                        self.rng.uniform(-1, 1),
                        self.rng.uniform(0.5, 1.5),
                    )
                )
        self.meters = [d for d in self.devices if d.measurement == "energy"]
        self._seq = 0

    def spiking(self, spikes: Spikes | None, t_ns: int) -> Device | None:
        """The energy meter drawing a spike at ``t_ns`` (None without ``spikes``)."""
        index = None if spikes is None else spikes.meter(t_ns, len(self.meters))
        return None if index is None else self.meters[index]

    def messages(
        self,
        start_ns: int,
        interval_s: float,
        *,
        batch: int = 1,
        late_fraction: float = 0.0,
        duplicate_fraction: float = 0.0,
        invalid_fraction: float = 0.0,
        late_by_s: tuple[float, float] = (1200.0, 3600.0),
        spikes: Spikes | None = None,
    ) -> Iterator[Message]:
        """Endless rounds: every device sends one message per round (``batch`` readings)."""
        rng = self.rng
        step = int(interval_s * NS)
        t = start_ns
        while True:
            for dev in self.devices:
                self._seq += 1
                msg_id = f"{dev.site_id}.{dev.device_id}.{self._seq}"
                roll = rng.random()
                if roll < invalid_fraction:
                    payload = rng.choice(INVALID)(t)
                    yield Message(dev.subject, payload, {"Nats-Msg-Id": msg_id}, 0, "invalid")
                    continue
                shift = 0
                kind = "good"
                if roll < invalid_fraction + late_fraction:
                    shift = int(rng.uniform(*late_by_s) * NS)
                    kind = "late"
                readings = []
                for k in range(batch):
                    ts = t - shift - (batch - 1 - k) * step // batch
                    spike = dev is self.spiking(spikes, ts)
                    values = reading(dev, ts, interval_s / batch, rng, spike=spike)
                    readings.append({"timestamp": ts, **values})
                payload = _encode(readings[0] if batch == 1 else readings)
                msg = Message(dev.subject, payload, {"Nats-Msg-Id": msg_id}, batch, kind)
                yield msg
                if rng.random() < duplicate_fraction:
                    yield Message(msg.subject, payload, dict(msg.headers), 0, "duplicate")
            t += step
