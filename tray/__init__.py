"""The tray icon: a thin client of the control API (no pipeline logic lives here)."""
