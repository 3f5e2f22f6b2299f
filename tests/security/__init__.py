"""The hostile-network campaign (issue 11), kept: each test plays an attacker or a broken peer."""
