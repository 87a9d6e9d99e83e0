"""satconv.fingerprint: what makes two runs the same run."""

from __future__ import annotations

import hashlib
import json

from satconv import config, fingerprint


def _digest_before_the_key(settings: config.Settings) -> str:
    """The config hash as satconv computed it before ``policy.thresholds_relative_to``
    existed: its effective config as JSON, which then had no such key."""
    d = settings.to_dict()

    def drop(policy: dict) -> None:
        assert policy.pop("thresholds_relative_to") == "absolute"

    drop(d["policy"])
    for step in d.get("steps", []):
        if "policy" in step:
            drop(step["policy"])
    text = json.dumps(d, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def test_a_new_key_at_its_old_behaviour_keeps_earlier_digests():
    """Outputs fingerprinted before an upgrade still match: --skip-existing does not redo an
    archive because satconv learnt a key that the config leaves at its default."""
    plain = config.Settings()
    steps = config.from_dict({"steps": [
        {"name": "a", "kernel": {"type": "box", "size": 3}},
        {"name": "b", "kernel": {"type": "box", "size": 5},
         "policy": {"type": "budget", "fraction": 0.2}}]})
    for s in (plain, steps):
        assert fingerprint.config_digest(s) == _digest_before_the_key(s)


def test_a_new_key_that_changes_the_plan_changes_the_digest():
    base = {"policy": {"thresholds": [10.0, 1.0]}}
    absolute = config.from_dict(base)
    relative = config.from_dict({"policy": {**base["policy"], "thresholds_relative_to": "scene"}})
    assert fingerprint.config_digest(absolute) != fingerprint.config_digest(relative)
