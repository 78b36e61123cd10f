"""Policy: model, dataset, training, ONNX export and the onnxruntime runtime."""
