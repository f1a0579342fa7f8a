"""chatfleet: the fleet operations tool of this project (rollout, status, check, uninstall) on ansible-runner."""
