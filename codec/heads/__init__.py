"""Uses of the trained backbone beyond compression (they never touch the container)."""
