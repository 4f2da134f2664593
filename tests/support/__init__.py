"""Test helpers shared by several test packages (PowerShell linting, ...)."""
