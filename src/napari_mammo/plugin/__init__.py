"""The napari side of napari-mammo: reader, sample data and widgets.

torch's optimiser imports triton, which crashes once napari has made a Mesa OpenGL
context; inside napari's process triton is therefore kept out before torch is imported
(training itself runs in a separate process).
"""

from napari_mammo.engine.runtime import keep_triton_out

keep_triton_out()
