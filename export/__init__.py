"""export: checkpoint -> ONNX (FP32 / FP16 / INT8 Q/DQ) -> TensorRT engine."""
