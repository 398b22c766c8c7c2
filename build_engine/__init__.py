"""ONNX -> TensorRT engines (FP16/INT8) for the cart, and INT8 ONNX variants for CPU hosts."""
