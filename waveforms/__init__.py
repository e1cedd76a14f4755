"""waveforms: turn a music collection into new music with WaveNet-family models on Kubeflow.

The library never imports kfp; components/ wrap it and pipelines/ wire the components.
"""

__version__ = "0.1.0"
