"""Where frames and face states come from: webcam, video file, demo."""
