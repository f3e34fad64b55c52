"""Inference as users run it: inputs and cameras, torch / ONNX Runtime / OpenVINO runners, ONNX export, batching,
video, raw depth files and the web demo's helpers. Used by run.py, run_video.py, export.py and app.py; builds on
depth_anything_v2, dataset (readers) and util (precision, visualisation, point clouds)."""
