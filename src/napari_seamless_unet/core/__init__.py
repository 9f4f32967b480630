"""The pure compute core: numpy and torch only, no napari, no Qt."""
