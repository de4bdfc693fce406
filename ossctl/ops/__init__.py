"""One library call per command that spans rooms: deploy / rollback / status / history
dispatched to one engine or a fleet, the VRAM plan of a profile, the bench of a release.
Commands in ``ossctl.cli`` call these; nothing here prints."""
