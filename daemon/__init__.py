"""The real-time side of VeilCam: sources, sinks, the pipeline, config, model files and the CLI."""
