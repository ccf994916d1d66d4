"""Pure compute: tracking, face state, smoothing, face geometry and renderers (arrays in, arrays out)."""
