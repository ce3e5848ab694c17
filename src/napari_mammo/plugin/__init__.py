"""The napari side of napari-mammo: reader, sample data and widgets (imports napari lazily)."""
