"""vsda_deploy: the lean runtime of vsda (numpy, OpenCV, ONNX Runtime; no torch).

Label maps, metrics, optical flow and the streaming segmenter live here, so training,
export and the edge all score and label with the same code.
"""

__version__ = "0.1.0"
