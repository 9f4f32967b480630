"""The napari plugin: widgets, sample data and layer conversion (imports napari and Qt; the core does not)."""
