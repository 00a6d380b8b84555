"""An all-in-one YMIR detection executor: training, mining and infer with Ultralytics YOLO."""
