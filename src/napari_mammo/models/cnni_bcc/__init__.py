"""CNNI-BCC, the poster's patch classifier: network and inference."""
