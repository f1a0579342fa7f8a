"""chatfleet: the fleet operations tool of this project (site, rollout, status, check, uninstall, backup, restore) on ansible-runner."""

__version__ = "1.0.0"
