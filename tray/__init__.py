"""The tray icon: a thin client of the control API (not built yet; see the daemon issue)."""
