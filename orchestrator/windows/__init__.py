"""Driving Windows hosts (Hyper-V, Windows Sandbox) with PowerShell."""
