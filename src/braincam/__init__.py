"""braincam: train CNNs on brain MRI, explain them with class activation maps, measure the maps.

The data flow is one-way: ingest → preprocess → represent → split → train → explain → evaluate →
report. Each step is a typed function usable from Python; ``braincam.cli`` is a thin layer on top.
"""

__version__ = "0.1.0"
